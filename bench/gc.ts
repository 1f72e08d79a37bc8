/**
 * Garbage collection's mark time: a 100 GiB logical volume of 64 KiB chunks
 * (1.6 million manifest entries) and a second snapshot of it with 10% of its
 * chunks rewritten, built with the real manifest code over an in-memory page
 * store (no disks, no network), then marked from both roots: every distinct
 * page fetched (and verified against its CID) once, every chunk CID recorded,
 * the Bloom filter sized and filled.
 *
 * Two shapes of change: `clustered` (one contiguous 10% region: most leaves are
 * shared) and `scattered` (10% as random 1 MiB extents: almost every leaf
 * differs, the worst case for sharing). `--scale` scales the volume size.
 */
import * as Digest from 'multiformats/hashes/digest'
import { CID } from 'multiformats/cid'
import type { BenchResult, BenchSuite } from './report.js'
import { MerkleManifest } from '../engine/chunks/manifest.js'
import { MemoryChunkStore } from '../engine/chunks/testing.js'
import { Marker } from '../engine/gc/mark.js'
import { seededRandom, xorshift32 } from '../core/seeded-random.js'

const GiB = 1024 ** 3
const CHUNK_BYTES = 64 * 1024
/** Entries per manifest update while building: bounds the Map of changes in memory. */
const BUILD_BATCH = 65_536
/** Chunks per rewritten extent in the scattered shape (1 MiB). */
const EXTENT_CHUNKS = 16

/** A raw CID with a digest from a counter and a salt: unique, cheap, and valid for the manifest. */
function fakeCid(n: number, salt: number): CID {
  const digest = new Uint8Array(32)
  const view = new DataView(digest.buffer)
  view.setUint32(0, n)
  view.setUint32(4, salt)
  const next = xorshift32(n * 2654435761 + salt)
  for (let i = 8; i < 32; i += 4) view.setUint32(i, next())
  return CID.createV1(0x55, Digest.create(0x12, digest))
}

/** Fixed seed: the scattered extents are the same in every run. */
const rng = seededRandom

async function buildBase(manifest: MerkleManifest, entries: number): Promise<CID> {
  let root: CID | null = null
  for (let start = 0; start < entries; start += BUILD_BATCH) {
    const changes = new Map<number, CID>()
    for (let i = start; i < Math.min(entries, start + BUILD_BATCH); i++) changes.set(i, fakeCid(i, 0))
    root = await manifest.update(root, changes)
  }
  return root as CID
}

/** Indexes rewritten between the snapshots: 10% of `entries`. */
function changedIndexes(entries: number, shape: 'clustered' | 'scattered'): number[] {
  const count = Math.floor(entries / 10)
  if (shape === 'clustered') return Array.from({ length: count }, (_, i) => Math.floor(entries / 3) + i)
  const next = rng(20261122)
  const out = new Set<number>()
  while (out.size < count) {
    const start = Math.floor(next() * (entries - EXTENT_CHUNKS))
    for (let i = 0; i < EXTENT_CHUNKS && out.size < count; i++) out.add(start + i)
  }
  return [...out].sort((a, b) => a - b)
}

async function rewrite(manifest: MerkleManifest, root: CID, indexes: readonly number[]): Promise<CID> {
  let next = root
  for (let at = 0; at < indexes.length; at += BUILD_BATCH) {
    const changes = new Map<number, CID>()
    for (const i of indexes.slice(at, at + BUILD_BATCH)) changes.set(i, fakeCid(i, 1))
    next = (await manifest.update(next, changes)) as CID
  }
  return next
}

export const gcSuite: BenchSuite = async function* ({ scale }) {
  const logicalBytes = Math.max(CHUNK_BYTES * 4096, Math.round(100 * GiB * scale))
  const entries = Math.floor(logicalBytes / CHUNK_BYTES)
  for (const shape of ['clustered', 'scattered'] as const) {
    const store = new MemoryChunkStore()
    const manifest = new MerkleManifest({ hash: 'sha2-256', pageCacheMaxBytes: 0 }, { chunks: store })
    const base = await buildBase(manifest, entries)
    const snap = await rewrite(manifest, base, changedIndexes(entries, shape))
    store.resetCounters()

    const wallStart = performance.now()
    const cpuStart = process.cpuUsage()
    const marker = new Marker(async () => store, () => ['bench'])
    await marker.walk([
      { cid: base, policy: 'bench', source: 'snapshot/base' },
      { cid: snap, policy: 'bench', source: 'snapshot/changed' },
    ])
    const mark = await marker.build()
    const cpu = process.cpuUsage(cpuStart)
    const wallSeconds = (performance.now() - wallStart) / 1000
    const settings = {
      shape,
      logicalGiB: Math.round((logicalBytes / GiB) * 100) / 100,
      chunkKiB: CHUNK_BYTES / 1024,
      entries,
      changedPercent: 10,
      pagesMarked: mark.markedPages,
      pagesFetched: store.chunksGot,
      chunksMarked: mark.markedChunks,
      filterBytes: mark.filter.bits.byteLength,
      cpuSeconds: Math.round(((cpu.user + cpu.system) / 1e6) * 100) / 100,
    }
    const result: BenchResult = { name: `gc.mark.${shape}`, value: wallSeconds, unit: 's', settings }
    yield result
    // Wall time on a shared machine measures the neighbours too; the rate is per CPU second of this process.
    yield { name: `gc.mark.${shape}.cpu-rate`, value: mark.markedChunks / ((cpu.user + cpu.system) / 1e6) / 1e6, unit: 'M chunks/CPU-s', settings: { shape } }
  }
}
