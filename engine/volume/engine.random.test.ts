import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngineHarness } from './testing/harness.js'
import { applyToModel, prng, randomOp, runOp } from './testing/random.js'

interface Case {
  seed: number
  chunkSizeBytes: number
  sizeBytes: number
  dirtyBytesMax: number
  steps: number
}

const cases: Case[] = [
  { seed: 1, chunkSizeBytes: 4096, sizeBytes: 256 * 1024, dirtyBytesMax: 64 * 1024, steps: 300 },
  { seed: 2, chunkSizeBytes: 65536, sizeBytes: 1024 * 1024, dirtyBytesMax: 256 * 1024, steps: 200 },
  { seed: 3, chunkSizeBytes: 4096, sizeBytes: 128 * 1024, dirtyBytesMax: 1024 * 1024, steps: 300 },
  { seed: 4, chunkSizeBytes: 16384, sizeBytes: 512 * 1024, dirtyBytesMax: 48 * 1024, steps: 300 },
  { seed: 5, chunkSizeBytes: 65536, sizeBytes: 1024 * 1024, dirtyBytesMax: 8 * 1024 * 1024, steps: 200 },
]

for (const c of cases) {
  test(`random workload matches a plain model after every step (seed ${c.seed}, ${c.chunkSizeBytes} B chunks)`, async () => {
    const h = await createEngineHarness({ chunkSizeBytes: c.chunkSizeBytes })
    try {
      await h.createVolume('vol', c.sizeBytes)
      const engine = await h.attach('vol', 'node-a', { dirtyBytesMax: c.dirtyBytesMax, flushThresholdBytes: Math.floor(c.dirtyBytesMax / 2) })
      const rng = prng(c.seed)
      const model = new Uint8Array(c.sizeBytes)
      for (let step = 0; step < c.steps; step++) {
        const roll = rng.next()
        if (roll < 0.05) await engine.flush()
        else if (roll < 0.1) await engine.flushDirty()
        else if (roll < 0.25) {
          // Several requests in flight at once, as from a multi-connection client; applied in issue order.
          const ops = Array.from({ length: rng.int(2, 6) }, () => randomOp(rng, c.sizeBytes, c.chunkSizeBytes))
          await Promise.all(ops.map((op) => runOp(engine, op, rng.next() < 0.2)))
          for (const op of ops) applyToModel(model, op)
        } else {
          const op = randomOp(rng, c.sizeBytes, c.chunkSizeBytes)
          await runOp(engine, op, rng.next() < 0.2)
          applyToModel(model, op)
        }
        const got = Buffer.from(await engine.pread(0, c.sizeBytes))
        if (!got.equals(model)) {
          const at = got.findIndex((b, i) => b !== model[i])
          assert.fail(`seed ${c.seed}: step ${step}: first difference at byte ${at} (got ${got[at]}, want ${model[at]})`)
        }
      }
      // Everything must also survive a last flush, read back purely from chunks.
      await engine.flushDirty()
      assert.equal(engine.dirtyBytes, 0, `seed ${c.seed}: dirty map empty after a full flush`)
      assert.ok(Buffer.from(await engine.pread(0, c.sizeBytes)).equals(model), `seed ${c.seed}: after the final flush`)
    } finally {
      await h.cleanup()
    }
  })
}
