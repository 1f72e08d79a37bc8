/**
 * The flusher's data step: turns a frozen dirty generation into manifest changes.
 *
 * Chunks go in batches (bounded memory, a few in flight): look up the current CIDs, read the old
 * chunk only for partially written entries (read-modify-write), merge, drop
 * chunks that are all zeroes (their entry is removed, never stored), and put the
 * rest in one batch. Hashing and encoding happen inside the chunk store's pool.
 */
import type { CID } from 'multiformats/cid'
import { assert } from '../../core/errors.js'
import type { ChunkStore } from '../contracts.js'
import { isAllZero, type DirtyChunk, type DirtyGeneration } from './dirty-chunk.js'
import type { LookupCache } from './lookup-cache.js'

export interface MergeDeps {
  chunkStore: ChunkStore
  lookups: LookupCache
  chunkSizeBytes: number
  batchChunks: number
  /** Batches merged and put at the same time. */
  batchesInFlight: number
}

export interface MergeResult {
  /** Index → new CID, or null to remove the entry. Unchanged chunks are left out. */
  changes: Map<number, CID | null>
  chunksPut: number
  bytesPut: number
  zeroChunks: number
}

/** Builds the manifest changes that fold `gen` into `root`. Never mutates `gen`. */
export async function mergeGeneration(deps: MergeDeps, root: CID | null, gen: DirtyGeneration): Promise<MergeResult> {
  const result: MergeResult = { changes: new Map(), chunksPut: 0, bytesPut: 0, zeroChunks: 0 }
  const indexes = [...gen.entries.keys()].sort((a, b) => a - b)
  const batches: number[][] = []
  for (let i = 0; i < indexes.length; i += deps.batchChunks) batches.push(indexes.slice(i, i + deps.batchChunks))
  // Batches overlap (bounded) so the storage nodes always have a put to work on while the
  // next batch is read and encoded; one at a time left them idle between round trips.
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < batches.length) await mergeBatch(deps, root, gen, batches[next++] as number[], result)
  }
  await Promise.all(Array.from({ length: Math.min(deps.batchesInFlight, batches.length) }, lane))
  return result
}

async function mergeBatch(deps: MergeDeps, root: CID | null, gen: DirtyGeneration, batch: number[], result: MergeResult): Promise<void> {
  const entries = batch.map((index) => gen.entries.get(index) as DirtyChunk)
  const current = await deps.lookups.lookup(root, batch)
  const bases = await readBases(deps, entries, current)
  const puts: { index: number; bytes: Uint8Array; old: CID | undefined }[] = []
  batch.forEach((index, i) => {
    const bytes = compose(entries[i] as DirtyChunk, bases[i], deps.chunkSizeBytes)
    if (bytes === undefined || isAllZero(bytes)) {
      result.zeroChunks++
      if (current[i] !== undefined) result.changes.set(index, null)
      return
    }
    puts.push({ index, bytes, old: current[i] })
  })
  if (puts.length === 0) return
  const cids = await deps.chunkStore.putChunks(
    puts.map((p) => p.bytes),
    'raw',
  )
  assert(cids.length === puts.length, `putChunks returned ${cids.length} CIDs for ${puts.length} chunks`)
  puts.forEach((p, i) => {
    const cid = cids[i] as CID
    result.chunksPut++
    result.bytesPut += p.bytes.length
    // Rewriting a chunk with the same bytes gives the same CID: the map need not change.
    if (p.old === undefined || !p.old.equals(cid)) result.changes.set(p.index, cid)
  })
}

/** The old chunks under partially written entries; undefined where none is needed or none exists. */
async function readBases(deps: MergeDeps, entries: DirtyChunk[], current: (CID | undefined)[]): Promise<(Uint8Array | undefined)[]> {
  const wanted: number[] = []
  entries.forEach((entry, i) => {
    if (!entry.complete && current[i] !== undefined) wanted.push(i)
  })
  const out: (Uint8Array | undefined)[] = new Array(entries.length)
  if (wanted.length === 0) return out
  const chunks = await deps.chunkStore.getChunks(wanted.map((i) => current[i] as CID))
  assert(chunks.length === wanted.length, `getChunks returned ${chunks.length} chunks for ${wanted.length}`)
  wanted.forEach((i, j) => {
    const chunk = chunks[j] as Uint8Array
    assert(chunk.length === deps.chunkSizeBytes, `stored chunk of ${chunk.length} bytes, expected ${deps.chunkSizeBytes}`)
    out[i] = chunk
  })
  return out
}

/** The chunk's new bytes; undefined when it is all zeroes without looking. */
function compose(entry: DirtyChunk, base: Uint8Array | undefined, chunkSizeBytes: number): Uint8Array | undefined {
  if (entry.complete) return entry.data
  const out = Buffer.alloc(chunkSizeBytes)
  if (base !== undefined) out.set(base)
  entry.overlay(out, 0, 0, chunkSizeBytes)
  return out
}
