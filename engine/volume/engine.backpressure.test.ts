import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createEngineHarness } from './testing/harness.js'
import { prng } from './testing/random.js'

test('with a tiny dirty bound a large write stream makes progress through backpressure and memory stays bounded', async () => {
  const chunk = 4096
  const bound = 16 * (chunk + 256)
  const h = await createEngineHarness({ chunkSizeBytes: chunk })
  try {
    const size = 8 * 1024 * 1024
    await h.createVolume('vol', size)
    const e = await h.attach('vol', 'node-a', { dirtyBytesMax: bound, flushThresholdBytes: bound / 2, flushBatchChunks: 4 })
    let peak = 0
    const sample = () => {
      peak = Math.max(peak, e.dirtyBytes)
    }
    // Sample inside the flusher too, while puts are in flight.
    const put = h.chunks.putChunks.bind(h.chunks)
    h.chunks.putChunks = async (chunks, codec) => {
      sample()
      return put(chunks, codec)
    }
    const rng = prng(7)
    const want = createHash('sha256')
    const writeBytes = 8 * 1024
    const inFlight = 8
    for (let off = 0; off < size; off += writeBytes * inFlight) {
      const batch = Array.from({ length: inFlight }, (_, i) => ({ at: off + i * writeBytes, data: rng.bytes(writeBytes) }))
      for (const b of batch) want.update(b.data)
      await Promise.all(batch.map((b) => e.pwrite(b.at, b.data, { fua: false }).then(sample)))
    }
    assert.ok(peak <= bound, `peak dirty bytes ${peak} exceed the bound ${bound}`)
    const waits = await h.registry.getSingleMetricAsString('cairn_volume_backpressure_waits_total')
    const count = Number(/\{volume="vol"\} (\d+)/.exec(waits)?.[1] ?? 0)
    assert.ok(count > 0, 'writers waited for the flusher')
    const got = createHash('sha256')
    for (let off = 0; off < size; off += 1024 * 1024) got.update(await e.pread(off, 1024 * 1024))
    assert.equal(got.digest('hex'), want.digest('hex'))
  } finally {
    await h.cleanup()
  }
})

test('a single write larger than the whole bound is admitted alone instead of waiting forever', async () => {
  const chunk = 4096
  const h = await createEngineHarness({ chunkSizeBytes: chunk })
  try {
    await h.createVolume('vol', 1024 * 1024)
    const e = await h.attach('vol', 'node-a', { dirtyBytesMax: 2 * chunk })
    await e.pwrite(0, Buffer.alloc(64 * chunk, 1), { fua: false })
    await e.pwrite(64 * chunk, Buffer.alloc(64 * chunk, 2), { fua: false })
    const got = Buffer.from(await e.pread(0, 128 * chunk))
    assert.ok(got.subarray(0, 64 * chunk).equals(Buffer.alloc(64 * chunk, 1)))
    assert.ok(got.subarray(64 * chunk).equals(Buffer.alloc(64 * chunk, 2)))
  } finally {
    await h.cleanup()
  }
})
