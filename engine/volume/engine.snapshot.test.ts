import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngineHarness, waitFor } from './testing/harness.js'

const CHUNK = 65536
const fill = (n: number, v: number) => Buffer.alloc(n, v)

test('a snapshot includes every write acknowledged before it; later writes do not reach it (read through a clone)', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 16 * CHUNK)
    const e = await h.attach('vol', 'node-a')
    await e.pwrite(100, fill(3 * CHUNK, 1), { fua: false })
    const snap = await e.snapshot('snap-1')
    assert.equal(snap.status.readyToUse, true)
    await e.pwrite(0, fill(4 * CHUNK, 2), { fua: false })
    await e.trim(8 * CHUNK, CHUNK, { fua: false })
    await e.flushDirty()

    // The clone is bigger than its source: it grows on attach.
    await h.createVolume('clone', 32 * CHUNK, { snapshot: 'snap-1' })
    const c = await h.attach('clone', 'node-b')
    assert.equal(c.sizeBytes, 32 * CHUNK)
    const want = fill(16 * CHUNK, 0)
    want.fill(1, 100, 100 + 3 * CHUNK)
    assert.ok(Buffer.from(await c.pread(0, 16 * CHUNK)).equals(want), 'the clone reads the snapshot')
    assert.ok(Buffer.from(await c.pread(16 * CHUNK, 16 * CHUNK)).equals(fill(16 * CHUNK, 0)))

    // Writes to either side stay on that side.
    await c.pwrite(0, fill(10, 7), { fua: false })
    await c.flushDirty()
    assert.ok(Buffer.from(await e.pread(0, 4 * CHUNK)).equals(fill(4 * CHUNK, 2)))
    assert.ok(Buffer.from(await c.pread(0, 101)).equals(Buffer.concat([fill(10, 7), fill(90, 0), fill(1, 1)])))
    const cloneHead = (await h.cp.getVolume('clone')).status.head
    assert.equal(cloneHead.sizeBytes, 32 * CHUNK)
  } finally {
    await h.cleanup()
  }
})

test('resize grows the export for new connections, survives re-attach, and cannot pass the volume size', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 4 * CHUNK)
    const e = await h.attach('vol', 'node-a')
    await assert.rejects(e.resize(8 * CHUNK), { name: 'InvalidArgumentError' })
    await h.cp.resizeVolume('vol', 8 * CHUNK)
    await e.resize(8 * CHUNK)
    assert.equal(e.sizeBytes, 8 * CHUNK)
    await e.pwrite(8 * CHUNK - 3, fill(3, 4), { fua: true })
    await assert.rejects(e.resize(4 * CHUNK), { name: 'InvalidArgumentError' })
    await e.stop()
    const again = await h.attach('vol', 'node-b')
    assert.equal(again.sizeBytes, 8 * CHUNK)
    assert.ok(Buffer.from(await again.pread(8 * CHUNK - 3, 3)).equals(fill(3, 4)))
    assert.equal((await h.cp.getVolume('vol')).status.head.sizeBytes, 8 * CHUNK)
  } finally {
    await h.cleanup()
  }
})

test('failed flushes keep the dirty data and retry; past the retry budget the engine fails writes, then recovers', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 8 * CHUNK)
    const e = await h.attach('vol', 'node-a', {
      dirtyBytesMax: 8 * (CHUNK + 256),
      flushThresholdBytes: 4 * (CHUNK + 256),
      flushRetriesMax: 2,
      flushBackoffBaseMs: 1,
      flushBackoffMaxMs: 5,
    })
    h.chunks.failPuts = 1
    await e.pwrite(0, fill(CHUNK, 5), { fua: false })
    await assert.rejects(e.flushDirty(), { name: 'ChunkWriteError' })
    assert.ok(Buffer.from(await e.pread(0, CHUNK)).equals(fill(CHUNK, 5)), 'dirty data still served after a failed flush')
    await e.flushDirty()
    assert.equal(e.dirtyBytes, 0)

    h.chunks.failPuts = 1_000_000
    // Past the threshold: the background flusher starts, fails, backs off, retries.
    await e.pwrite(CHUNK, fill(4 * CHUNK, 6), { fua: false })
    await waitFor(() => e.engineState === 'failed', 'the engine to fail after repeated flush failures')
    await assert.rejects(e.pwrite(0, fill(1, 1), { fua: false }), { name: 'VolumeFailedError' })
    assert.ok(Buffer.from(await e.pread(CHUNK, CHUNK)).equals(fill(CHUNK, 6)), 'reads still served while failed')
    assert.match(e.readiness() ?? '', /failed/)
    h.chunks.failPuts = 0
    await waitFor(() => e.engineState === 'serving', 'a retried flush to succeed')
    assert.equal(e.readiness(), undefined)
    await e.pwrite(0, fill(1, 1), { fua: false })
  } finally {
    await h.cleanup()
  }
})

test('a failed journal append fails the engine; a re-attach recovers every durable write', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 8 * CHUNK)
    const e = await h.attach('vol', 'node-a')
    await e.pwrite(0, fill(100, 8), { fua: true })
    const journal = h.journals.clients[h.journals.clients.length - 1]
    assert.ok(journal !== undefined)
    journal.failAppends = 1
    await assert.rejects(e.pwrite(200, fill(100, 9), { fua: false }), { name: 'JournalWriteError' })
    assert.equal(e.engineState, 'failed')
    await assert.rejects(e.pwrite(200, fill(100, 9), { fua: false }), { name: 'VolumeFailedError' })
    const again = await h.attach('vol', 'node-b')
    assert.ok(Buffer.from(await again.pread(0, 300)).equals(Buffer.concat([fill(100, 8), fill(200, 0)])))
  } finally {
    await h.cleanup()
  }
})

test('detach flushes and checkpoints everything, so the next attach replays nothing', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 8 * CHUNK)
    const e = await h.attach('vol', 'node-a')
    await e.pwrite(5, fill(2 * CHUNK, 3), { fua: false })
    await e.stop()
    await e.stop()
    const vol = await h.cp.getVolume('vol')
    assert.equal(vol.status.attachment, null)
    const state = h.journals.state(vol.uid)
    assert.equal(state.checkpoint?.seq, vol.status.head.journalSeq)
    assert.equal(state.records.length, 0, 'the checkpoint trimmed the journal')
    const again = await h.attach('vol', 'node-b')
    assert.equal(again.dirtyBytes, 0)
    assert.ok(Buffer.from(await again.pread(5, 2 * CHUNK)).equals(fill(2 * CHUNK, 3)))
  } finally {
    await h.cleanup()
  }
})
