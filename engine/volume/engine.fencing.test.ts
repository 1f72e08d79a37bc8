import { test } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger } from '../../core/logger.js'
import { toNbdErrno } from '../nbd/errors.js'
import { NBD_CMD_WRITE, NBD_EIO } from '../nbd/protocol.js'
import { attachVolume } from './attach.js'
import { createEngineHarness, waitFor } from './testing/harness.js'
import { MemoryJournalReplicas } from './testing/memory-journal.js'

const MiB = 1024 * 1024
const fill = (n: number, v: number) => Buffer.alloc(n, v)

test('a second attach fences the first: its writes and reads fail with EIO and it never moves the head', async () => {
  const h = await createEngineHarness()
  try {
    await h.createVolume('vol', MiB)
    const a = await h.attach('vol', 'node-a')
    await a.pwrite(0, fill(65536, 1), { fua: false })
    await a.flushDirty()
    // Acknowledged and durable in the journal (auto group commit), but only in A's dirty map.
    await a.pwrite(65536, fill(4096, 2), { fua: true })
    const b = await h.attach('vol', 'node-b')
    const headAfterB = (await h.cp.getVolume('vol')).status.head

    const err = await a.pwrite(0, fill(10, 9), { fua: false }).then(() => undefined, (e: unknown) => e)
    assert.equal((err as Error).name, 'VolumeFencedError')
    assert.equal(toNbdErrno(err, NBD_CMD_WRITE), NBD_EIO)
    assert.equal(a.engineState, 'fenced')
    await assert.rejects(a.pread(0, 10), { name: 'VolumeFencedError' })
    await assert.rejects(a.flushDirty(), { name: 'VolumeFencedError' })
    await a.stop()
    assert.deepEqual((await h.cp.getVolume('vol')).status.head, headAfterB, 'the fenced engine wrote no head')

    // B sees both A's flushed data and its journaled FUA write, and nothing A tried after the fence.
    const got = Buffer.from(await b.pread(0, 65536 + 4096))
    assert.ok(got.subarray(0, 65536).equals(fill(65536, 1)))
    assert.ok(got.subarray(65536).equals(fill(4096, 2)))
    assert.equal((await h.cp.getVolume('vol')).status.attachment?.nodeId, 'node-b', 'stopping A did not release B')
  } finally {
    await h.cleanup()
  }
})

test('the control plane fences a stale flusher even when its journal has not noticed', async () => {
  const h = await createEngineHarness()
  try {
    await h.createVolume('vol', MiB)
    const a = await h.attach('vol', 'node-a')
    await a.pwrite(0, fill(4096, 7), { fua: false })
    // B takes the epoch with journals on other replicas, so A's journal never hears of it.
    const otherJournals = new MemoryJournalReplicas()
    const b = await attachVolume(
      { volumeName: 'vol', nodeId: 'node-b' },
      { controlPlane: h.cp, chunkStore: h.chunks, manifest: h.manifest, journalFactory: otherJournals.factory, logger: silentLogger(), registry: h.registry },
    )
    const before = (await h.cp.getVolume('vol')).status.head
    await assert.rejects(a.flushDirty(), { name: 'VolumeFencedError' })
    assert.equal(a.engineState, 'fenced')
    assert.deepEqual((await h.cp.getVolume('vol')).status.head, before)
    await waitFor(() => a.engineState === 'fenced', 'A fenced')
    await assert.rejects(a.pwrite(0, fill(1, 1), { fua: false }), { name: 'VolumeFencedError' })
    await b.stop()
  } finally {
    await h.cleanup()
  }
})

test('attach takes a strictly newer epoch each time and records the attachment; stop releases it', async () => {
  const h = await createEngineHarness()
  try {
    await h.createVolume('vol', MiB)
    const a = await h.attach('vol', 'node-a')
    assert.equal(a.epoch, 1)
    await a.stop()
    assert.equal((await h.cp.getVolume('vol')).status.attachment, null)
    const b = await h.attach('vol', 'node-b')
    assert.equal(b.epoch, 2)
    assert.equal((await h.cp.getVolume('vol')).status.attachment?.nodeId, 'node-b')
    await assert.rejects(a.pwrite(0, fill(1, 1), { fua: false }), { name: 'ShuttingDownError' })
  } finally {
    await h.cleanup()
  }
})
