/**
 * FLUSH is a journal sync and nothing more (ARCHITECTURE "Write path"): the flusher
 * may be stuck on chunk puts or failing, and FLUSH still completes as soon as the
 * journal holds every acknowledged write durably.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngineHarness, waitFor } from './testing/harness.js'
import type { MemoryJournal } from './testing/memory-journal.js'
import { prng } from './testing/random.js'

const CHUNK_BYTES = 4096

test('FLUSH completes while the flusher is blocked in chunk puts, and what it acknowledged survives the loss of the engine', { timeout: 30_000 }, async () => {
  // Group commit only when asked: durability then comes from FLUSH's sync, not from a timer.
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK_BYTES, journal: { commitDelayMs: 3_600_000 } })
  let release = (): void => undefined
  try {
    await h.createVolume('vol', 64 * CHUNK_BYTES)
    const e = await h.attach('vol', 'node-a')
    const journal = h.journals.clients.at(-1) as MemoryJournal
    const rng = prng(11)
    const first = rng.bytes(8 * CHUNK_BYTES)
    await e.pwrite(0, first, { fua: false })
    h.chunks.gate = new Promise<void>((resolve) => (release = resolve))
    let putsWaiting = 0
    const put = h.chunks.putChunks.bind(h.chunks)
    h.chunks.putChunks = (chunks, codec) => {
      putsWaiting++
      return put(chunks, codec)
    }
    let flusherDone = false
    const flusher = e.flushDirty().then(() => (flusherDone = true))
    await waitFor(() => putsWaiting > 0, 'the flusher to block in its chunk put')
    const second = rng.bytes(3 * CHUNK_BYTES + 100)
    await e.pwrite(5 * CHUNK_BYTES + 7, second, { fua: false })
    assert.ok(journal.pendingCount > 0, 'the second write is acknowledged but not yet durable')
    await e.flush()
    assert.equal(journal.pendingCount, 0, 'FLUSH made every acknowledged write durable')
    assert.equal(flusherDone, false, 'FLUSH returned while the flusher was still blocked')
    // The engine's node dies with the flusher still stuck: a new attach replays the journal.
    journal.crash()
    const next = await h.attach('vol', 'node-b')
    const want = Buffer.alloc(9 * CHUNK_BYTES)
    want.set(first)
    want.set(second, 5 * CHUNK_BYTES + 7)
    assert.ok(Buffer.from(await next.pread(0, want.length)).equals(want), 'seed 11: every write before the FLUSH is there')
    release()
    await flusher.catch(() => undefined)
  } finally {
    release()
    h.chunks.gate = undefined
    await h.cleanup()
  }
})

test('FLUSH still succeeds when flushes keep failing (the journal holds the data), while new writes are refused with EIO', { timeout: 30_000 }, async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK_BYTES })
  try {
    await h.createVolume('vol', 64 * CHUNK_BYTES)
    // Every write starts the background flusher, which retries quickly and gives up after two failures.
    const e = await h.attach('vol', 'node-a', { flushThresholdBytes: 1, flushRetriesMax: 2, flushBackoffBaseMs: 1, flushBackoffMaxMs: 5 })
    h.chunks.failPuts = 1_000_000
    await e.pwrite(0, Buffer.alloc(CHUNK_BYTES, 7), { fua: false })
    await waitFor(() => e.engineState === 'failed', 'the engine to give up on flushing')
    await e.flush()
    await assert.rejects(e.pwrite(0, Buffer.alloc(10, 1), { fua: false }), { name: 'VolumeFailedError' })
    h.chunks.failPuts = 0
    await waitFor(() => e.engineState === 'serving', 'a retried flush to succeed and clear the failure')
    assert.ok(Buffer.from(await e.pread(0, CHUNK_BYTES)).equals(Buffer.alloc(CHUNK_BYTES, 7)))
  } finally {
    h.chunks.failPuts = 0
    await h.cleanup()
  }
})
