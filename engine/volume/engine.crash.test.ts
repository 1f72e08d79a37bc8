import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { JournalOp } from '../contracts.js'
import type { VolumeEngine } from './engine.js'
import { createEngineHarness, type EngineHarness } from './testing/harness.js'
import type { MemoryJournal } from './testing/memory-journal.js'
import { applyToModel, prng, randomOp, runOp } from './testing/random.js'

const SIZE_BYTES = 256 * 1024
const CHUNK_BYTES = 4096

/** The recovered image must be the model after some prefix of the ops at least as long as the durable prefix. */
function matchesSomePrefix(image: Buffer, base: Uint8Array, ops: JournalOp[], durable: number): number {
  const model = Uint8Array.from(base)
  for (let i = 0; i < durable; i++) applyToModel(model, ops[i] as JournalOp)
  for (let i = durable; ; i++) {
    if (image.equals(model)) return i
    if (i >= ops.length) return -1
    applyToModel(model, ops[i] as JournalOp)
  }
}

async function crashRound(h: EngineHarness, engine: VolumeEngine, seed: number, round: number) {
  const rng = prng(seed * 1000 + round)
  const journal = h.journals.clients[h.journals.clients.length - 1] as MemoryJournal
  const ops: JournalOp[] = []
  let durable = 0
  const steps = rng.int(5, 120)
  for (let step = 0; step < steps; step++) {
    const roll = rng.next()
    if (roll < 0.08) {
      await engine.flush()
      durable = ops.length
    } else if (roll < 0.12) {
      await engine.flushDirty()
      durable = ops.length
    } else if (roll < 0.2) {
      // Background group commit: whatever was accepted so far becomes durable.
      journal.commit()
    } else {
      const op = randomOp(rng, SIZE_BYTES, CHUNK_BYTES)
      const fua = rng.next() < 0.1
      await runOp(engine, op, fua)
      ops.push(op)
      if (fua) durable = ops.length
    }
  }
  // The node dies: unsynced journal records are lost and the engine object is dropped without detach.
  journal.crash()
  return { ops, durable }
}

for (const seed of [11, 12, 13, 14]) {
  test(`crash at random points: acknowledged-and-flushed writes survive, a prefix is recovered (seed ${seed})`, async () => {
    const h = await createEngineHarness({ chunkSizeBytes: CHUNK_BYTES, journal: { commitDelayMs: 5 } })
    try {
      await h.createVolume('vol', SIZE_BYTES)
      let engine = await h.attach('vol', 'node-0', { dirtyBytesMax: 64 * 1024 })
      let base: Uint8Array = new Uint8Array(SIZE_BYTES)
      for (let round = 0; round < 4; round++) {
        const { ops, durable } = await crashRound(h, engine, seed, round)
        const epochBefore = engine.epoch
        engine = await h.attach('vol', `node-${round + 1}`, { dirtyBytesMax: 64 * 1024 })
        assert.ok(engine.epoch > epochBefore, 'a new attach takes a newer epoch')
        const image = Buffer.from(await engine.pread(0, SIZE_BYTES))
        const prefix = matchesSomePrefix(image, base, ops, durable)
        assert.ok(prefix >= 0, `seed ${seed} round ${round}: recovered image is no prefix of at least ${durable}/${ops.length} ops`)
        base = Uint8Array.from(image)
      }
    } finally {
      await h.cleanup()
    }
  })
}
