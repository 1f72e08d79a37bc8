import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngineHarness } from './testing/harness.js'
import { cidFromString } from '../../core/cid.js'

const CHUNK = 65536
const fill = (n: number, v: number) => Buffer.alloc(n, v)

async function manifestIndexes(h: Awaited<ReturnType<typeof createEngineHarness>>): Promise<number[]> {
  const root = (await h.cp.getVolume('vol')).status.head.rootCid
  const out: number[] = []
  for await (const [i] of h.manifest.entries(root === null ? null : cidFromString(root), 0, 1 << 30)) out.push(i)
  return out
}

test('all-zero chunks are never stored, whether written as zeroes or zeroed by read-modify-write', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 16 * CHUNK)
    const e = await h.attach('vol')
    await e.pwrite(0, fill(CHUNK, 0), { fua: false })
    await e.pwrite(CHUNK + 100, fill(50, 0), { fua: false })
    await e.flushDirty()
    assert.equal(h.chunks.rawPuts, 0, 'no data chunk was put')
    assert.equal((await h.cp.getVolume('vol')).status.head.rootCid, null)

    await e.pwrite(2 * CHUNK + 100, fill(100, 5), { fua: false })
    await e.flushDirty()
    assert.deepEqual(await manifestIndexes(h), [2])
    // Zeroing exactly the written bytes makes the merged chunk all zero: its entry goes away.
    await e.zero(2 * CHUNK + 100, 100, { fua: false, fast: false, noHole: false })
    await e.flushDirty()
    assert.deepEqual(await manifestIndexes(h), [])
    const metrics = await h.registry.getSingleMetricAsString('cairn_volume_zero_chunks_skipped_total')
    assert.match(metrics, /cairn_volume_zero_chunks_skipped_total\{volume="vol"\} 3/)
  } finally {
    await h.cleanup()
  }
})

test('trim and write-zeroes free whole chunks (manifest entries removed) and extents report holes', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 8 * CHUNK)
    const e = await h.attach('vol')
    await e.pwrite(0, fill(4 * CHUNK, 3), { fua: false })
    await e.flushDirty()
    assert.deepEqual(await manifestIndexes(h), [0, 1, 2, 3])
    await e.trim(CHUNK, CHUNK, { fua: false })
    await e.zero(2 * CHUNK, CHUNK + 10, { fua: false, fast: true, noHole: false })
    // Before the flush the dirty map already reports the holes.
    const dirtyExtents = await e.extents(0, 8 * CHUNK)
    assert.deepEqual(dirtyExtents, [
      { lengthBytes: CHUNK, hole: false, zero: false },
      { lengthBytes: 2 * CHUNK, hole: true, zero: true },
      { lengthBytes: CHUNK, hole: false, zero: false },
      { lengthBytes: 4 * CHUNK, hole: true, zero: true },
    ])
    await e.flushDirty()
    assert.deepEqual(await manifestIndexes(h), [0, 3])
    assert.deepEqual(await e.extents(0, 8 * CHUNK), dirtyExtents)
    const got = Buffer.from(await e.pread(0, 4 * CHUNK))
    assert.ok(got.subarray(0, CHUNK).equals(fill(CHUNK, 3)))
    assert.ok(got.subarray(CHUNK, 3 * CHUNK + 10).equals(fill(2 * CHUNK + 10, 0)))
    assert.ok(got.subarray(3 * CHUNK + 10).equals(fill(CHUNK - 10, 3)))
  } finally {
    await h.cleanup()
  }
})

test('identical chunks are stored once and rewriting the same bytes changes no manifest entry', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: CHUNK })
  try {
    await h.createVolume('vol', 8 * CHUNK)
    const e = await h.attach('vol')
    await e.pwrite(0, fill(4 * CHUNK, 9), { fua: false })
    await e.flushDirty()
    const dataChunks = [...h.chunks.chunks.values()].filter((c) => c.length === CHUNK).length
    assert.equal(dataChunks, 1)
    const updates = h.manifest.updates
    await e.pwrite(0, fill(CHUNK, 9), { fua: false })
    await e.flushDirty()
    assert.equal(h.manifest.updates, updates, 'no new root for an unchanged map')
  } finally {
    await h.cleanup()
  }
})
