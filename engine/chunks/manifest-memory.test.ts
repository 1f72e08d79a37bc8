/**
 * The decoded-page cache is bounded by the memory it really holds, not by the encoded
 * size of its pages: a decoded link costs about sixteen times its encoded bytes, so a
 * cache that counted encoded bytes held sixteen times its bound, and an engine's memory
 * grew with the filled size of its volume. Measures heap plus ArrayBuffer bytes after a
 * forced GC, so garbage not yet collected does not count.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { CID } from 'multiformats/cid'
import { chunkCid } from '../../core/cid.js'
import { MerkleManifest } from './manifest.js'
import { FANOUT, PAGE_LINK_MEMORY_BYTES } from './manifest-page.js'
import { MemoryChunkStore } from './testing.js'

setFlagsFromString('--expose-gc')
setFlagsFromString('--no-concurrent-array-buffer-sweeping')
const gc = runInNewContext('gc') as () => void

const MiB = 1024 * 1024
const LEAF_PAGES = 40
const ENTRIES = LEAF_PAGES * FANOUT

function liveBytes(): number {
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

async function readEverything(manifest: MerkleManifest, root: CID): Promise<void> {
  for (let from = 0; from < ENTRIES; from += FANOUT) {
    const found = await manifest.lookup(root, Array.from({ length: FANOUT }, (_, i) => from + i))
    assert.equal(found.filter((c) => c !== undefined).length, FANOUT)
  }
}

test('reading every entry of a large map holds no more decoded pages than the cache bound', async () => {
  const store = new MemoryChunkStore()
  const builder = new MerkleManifest({ hash: 'sha2-256' }, { chunks: store })
  const entries = new Map<number, CID>()
  for (let i = 0; i < ENTRIES; i++) entries.set(i, chunkCid(new TextEncoder().encode(`chunk ${i}`)))
  const root = await builder.update(null, entries)
  assert.ok(root !== null)
  entries.clear()
  builder.clearCache()

  // A cache larger than the whole map: what decoding every page really costs, against the constant.
  const unbounded = new MerkleManifest({ hash: 'sha2-256', pageCacheMaxBytes: 256 * MiB }, { chunks: store })
  let before = liveBytes()
  await readEverything(unbounded, root)
  const perLink = (liveBytes() - before) / ENTRIES
  assert.ok(perLink > PAGE_LINK_MEMORY_BYTES / 4, `a decoded link costs ${perLink.toFixed(0)} bytes: far below the constant, so the measurement is broken`)
  assert.ok(perLink <= PAGE_LINK_MEMORY_BYTES + 64, `a decoded link costs ${perLink.toFixed(0)} bytes, more than PAGE_LINK_MEMORY_BYTES (${PAGE_LINK_MEMORY_BYTES}) plus its encoded bytes`)
  unbounded.clearCache()

  // A 4 MiB cache over a map whose decoded pages take about 28 MiB.
  const boundBytes = 4 * MiB
  const bounded = new MerkleManifest({ hash: 'sha2-256', pageCacheMaxBytes: boundBytes }, { chunks: store })
  before = liveBytes()
  await readEverything(bounded, root)
  const held = liveBytes() - before
  assert.ok(held <= boundBytes + MiB, `the page cache holds ${(held / MiB).toFixed(1)} MiB against a bound of ${boundBytes / MiB} MiB`)
})
