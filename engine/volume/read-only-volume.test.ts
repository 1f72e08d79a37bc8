import { test } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger } from '../../core/logger.js'
import { runOk, startTestServer } from '../nbd/testing.js'
import { toNbdErrno } from '../nbd/errors.js'
import { NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EPERM } from '../nbd/protocol.js'
import { attachReadOnly } from './read-only-volume.js'
import { createEngineHarness, type EngineHarness } from './testing/harness.js'
import type { MemoryJournal } from './testing/memory-journal.js'
import { prng } from './testing/random.js'

const CHUNK = 65536
const fill = (n: number, v: number): Buffer => Buffer.alloc(n, v)
/** nbdsh needs Debian's python3 (it has the nbd module), which a pyenv on PATH can hide. */
const nbdshEnv = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` }

function readOnlyComponents(h: EngineHarness) {
  return { controlPlane: h.cp, chunkStore: h.chunks, manifest: h.manifest, logger: silentLogger() }
}

function openReadOnly(h: EngineHarness, volumeName: string) {
  return attachReadOnly({ volumeName }, readOnlyComponents(h))
}

/** A volume written by a writer engine (some chunks, a trimmed hole, an unaligned tail), then cleanly detached. */
async function writtenVolume(h: EngineHarness, name: string): Promise<void> {
  await h.createVolume(name, 16 * CHUNK)
  const w = await h.attach(name, 'writer')
  await w.pwrite(0, fill(2 * CHUNK, 1), { fua: false })
  await w.pwrite(5 * CHUNK + 100, fill(3000, 2), { fua: false })
  await w.pwrite(8 * CHUNK, fill(CHUNK, 3), { fua: false })
  await w.trim(8 * CHUNK, CHUNK, { fua: false })
  await w.stop()
}

test('a read-only attach reads exactly what the writer left, takes no epoch and writes nothing', async () => {
  const h = await createEngineHarness()
  try {
    await writtenVolume(h, 'vol')
    const before = await h.cp.getVolume('vol')
    assert.equal(before.status.attachment, null)
    const ro = await openReadOnly(h, 'vol')
    const second = await openReadOnly(h, 'vol')
    // What a writer's engine reads for the same head is the reference (same read path, nothing dirty).
    const ref = await h.attach('vol', 'reference')
    const seed = 20261123
    const rand = prng(seed).next
    for (let i = 0; i < 40; i++) {
      const offset = Math.floor(rand() * 15 * CHUNK)
      const length = 1 + Math.floor(rand() * Math.min(3 * CHUNK, 16 * CHUNK - offset - 1))
      const want = Buffer.from(await ref.pread(offset, length))
      assert.ok(Buffer.from(await ro.pread(offset, length)).equals(want), `read ${offset}+${length} differs (seed ${seed})`)
      assert.ok(Buffer.from(await second.pread(offset, length)).equals(want), `second reader ${offset}+${length} differs (seed ${seed})`)
    }
    assert.deepEqual(await ro.extents(0, 16 * CHUNK), await ref.extents(0, 16 * CHUNK))
    assert.equal((await ro.extents(8 * CHUNK, CHUNK))[0]?.hole, true, 'the trimmed chunk is a hole')
    assert.ok(Buffer.from(await ro.pread(0, CHUNK)).equals(fill(CHUNK, 1)))
    await ref.stop()
    const after = await h.cp.getVolume('vol')
    // Only the reference writer moved the epoch; the readers left the head and attachment as they were.
    assert.equal(after.status.epoch, before.status.epoch + 1)
    assert.deepEqual(after.status.head.rootCid, before.status.head.rootCid)
    assert.equal(ro.sizeBytes, 16 * CHUNK)
  } finally {
    await h.cleanup()
  }
})

test('writes, trims and zeroes are refused with EPERM and change nothing', async () => {
  const h = await createEngineHarness()
  try {
    await writtenVolume(h, 'vol')
    const ro = await openReadOnly(h, 'vol')
    assert.equal(ro.isReadOnly, true)
    const head = (await h.cp.getVolume('vol')).status.head
    const write = await ro.pwrite(0, fill(10, 9), { fua: false }).then(() => undefined, (e: unknown) => e)
    assert.equal((write as Error).name, 'ReadOnlyVolumeError')
    assert.equal(toNbdErrno(write, NBD_CMD_WRITE), NBD_EPERM)
    const trim = await ro.trim(0, CHUNK, { fua: false }).then(() => undefined, (e: unknown) => e)
    assert.equal(toNbdErrno(trim, NBD_CMD_TRIM), NBD_EPERM)
    const zero = await ro.zero(0, CHUNK, { fua: false, fast: false, noHole: false }).then(() => undefined, (e: unknown) => e)
    assert.equal(toNbdErrno(zero, NBD_CMD_WRITE_ZEROES), NBD_EPERM)
    await ro.flush()
    assert.ok(Buffer.from(await ro.pread(0, CHUNK)).equals(fill(CHUNK, 1)), 'the data is unchanged')
    assert.deepEqual((await h.cp.getVolume('vol')).status.head, head)
    await ro.close()
    await assert.rejects(ro.pread(0, 10), { name: 'ReadOnlyVolumeClosedError' })
  } finally {
    await h.cleanup()
  }
})

test('a read-only attach is refused while a writer holds the volume, and allowed once it detached', async () => {
  const h = await createEngineHarness()
  try {
    await h.createVolume('vol', 4 * CHUNK)
    const w = await h.attach('vol', 'writer')
    // Acknowledged but only in the writer's journal and dirty map: the head lags.
    await w.pwrite(0, fill(CHUNK, 7), { fua: true })
    await assert.rejects(openReadOnly(h, 'vol'), { name: 'VolumeWriterAttachedError' })
    await w.stop()
    const ro = await openReadOnly(h, 'vol')
    assert.ok(Buffer.from(await ro.pread(0, CHUNK)).equals(fill(CHUNK, 7)), 'the clean detach folded the write into the head')
  } finally {
    await h.cleanup()
  }
})

test('a writer that died and was released by the controller leaves its head lagging: a read-only attach recovers the journal first', async () => {
  const h = await createEngineHarness()
  try {
    await writtenVolume(h, 'vol')
    const cleanHead = (await h.cp.getVolume('vol')).status.head
    const w = await h.attach('vol', 'writer-2')
    // Acknowledged by FLUSH (durable in the journal), never folded into the head: then the node dies.
    await w.pwrite(CHUNK, fill(CHUNK, 8), { fua: false })
    await w.pwrite(10 * CHUNK + 5, fill(4000, 9), { fua: false })
    await w.flush()
    ;(h.journals.clients.at(-1) as MemoryJournal).crash()
    // ControllerUnpublishVolume for the dead node: the attachment goes, the head is marked.
    const released = await h.cp.releaseAttachment('vol', 'writer-2', w.epoch, { headCurrent: false })
    assert.equal(released.status.attachment, null)
    assert.equal(released.status.recoveryPending, true)
    assert.deepEqual(released.status.head, cleanHead, 'the head lags: the acknowledged writes are only in the journal')

    // Without a way to recover, serving that head would lose acknowledged writes: refused.
    await assert.rejects(openReadOnly(h, 'vol'), { name: 'VolumeRecoveryPendingError', kind: 'unavailable' })
    // A recoverer that does not get the head clean (here: does nothing) is refused too.
    await assert.rejects(attachReadOnly({ volumeName: 'vol' }, { ...readOnlyComponents(h), recover: async () => undefined }), /did not complete/)

    // As ControllerPublishVolume records it: the reader's node is a reader while it recovers the head.
    await h.cp.addReader('vol', 'reader-node')
    const recovered: string[] = []
    const ro = await attachReadOnly(
      { volumeName: 'vol' },
      {
        ...readOnlyComponents(h),
        recover: async (name) => {
          recovered.push(name)
          await (await h.attach(name, 'reader-node')).stop()
        },
      },
    )
    assert.deepEqual(recovered, ['vol'])
    assert.ok(Buffer.from(await ro.pread(CHUNK, CHUNK)).equals(fill(CHUNK, 8)), 'the FLUSHed write is served')
    assert.ok(Buffer.from(await ro.pread(10 * CHUNK + 5, 4000)).equals(fill(4000, 9)))
    assert.ok(Buffer.from(await ro.pread(0, CHUNK)).equals(fill(CHUNK, 1)), 'what the head held before is still there')
    const after = await h.cp.getVolume('vol')
    assert.equal(after.status.recoveryPending, false, 'the recovery detached cleanly')
    assert.equal(after.status.attachment, null)
    assert.ok(after.status.head.journalSeq > cleanHead.journalSeq)
    // Recovered once: the next reader attaches without recovering, and no writer can attach under them.
    await openReadOnly(h, 'vol')
    await assert.rejects(h.attach('vol', 'writer-3'), { name: 'FailedPreconditionError' })
  } finally {
    await h.cleanup()
  }
})

test('a volume restored from a snapshot is served read-only by many readers, never attached, epoch 0', async () => {
  const h = await createEngineHarness()
  try {
    await writtenVolume(h, 'src')
    await h.cp.createSnapshot({ name: 'snap', volume: 'src' })
    await h.createVolume('restored', 32 * CHUNK, { snapshot: 'snap' })
    const readers = await Promise.all([openReadOnly(h, 'restored'), openReadOnly(h, 'restored'), openReadOnly(h, 'restored')])
    for (const r of readers) {
      assert.equal(r.sizeBytes, 32 * CHUNK, 'a restore bigger than its snapshot serves its own size')
      const got = Buffer.from(await r.pread(0, 32 * CHUNK))
      assert.ok(got.subarray(0, 2 * CHUNK).equals(fill(2 * CHUNK, 1)))
      assert.ok(got.subarray(5 * CHUNK + 100, 5 * CHUNK + 3100).equals(fill(3000, 2)))
      assert.ok(got.subarray(16 * CHUNK).equals(fill(16 * CHUNK, 0)), 'past the snapshot reads zeroes')
    }
    const v = await h.cp.getVolume('restored')
    assert.equal(v.status.epoch, 0)
    assert.equal(v.status.attachment, null)
    await assert.rejects(openReadOnly(h, 'missing'), { name: 'NotFoundError' })
  } finally {
    await h.cleanup()
  }
})

test('over NBD the export is advertised read-only, reads the head and a write gets EPERM on the wire', async () => {
  const h = await createEngineHarness()
  try {
    await writtenVolume(h, 'vol')
    const ro = await openReadOnly(h, 'vol')
    const server = await startTestServer({ vol: ro })
    try {
      // Strict mode off, so libnbd sends the write and the answer is the server's, not the client library's.
      const script = [
        'h.set_strict_mode(0)',
        `h.connect_uri(${JSON.stringify(server.uri('vol'))})`,
        'print("ro", h.is_read_only())',
        'print("size", h.get_size())',
        'print("first", h.pread(4, 0).hex())',
        'try:\n    h.pwrite(b"x" * 512, 0)\n    print("write ok")\nexcept nbd.Error as e:\n    print("write errno", e.errno)',
        'print("after", h.pread(4, 0).hex())',
      ].join('\n')
      const out = await runOk('nbdsh', ['-c', script], 60_000, nbdshEnv)
      assert.match(out, /^ro True$/m)
      assert.match(out, new RegExp(`^size ${16 * CHUNK}$`, 'm'))
      assert.match(out, /^first 01010101$/m)
      assert.match(out, /^write errno EPERM$/m)
      assert.match(out, /^after 01010101$/m)
    } finally {
      await server.stop()
    }
  } finally {
    await h.cleanup()
  }
})
