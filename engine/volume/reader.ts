/**
 * The read side: bytes and allocation extents of a range, as the dirty map over
 * the chunks of the current root. Everything a read overlays (root and dirty
 * layers) is captured in one synchronous step before the first await, so a flush
 * that commits meanwhile cannot make the read mix two states.
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../../core/cid.js'
import { assert } from '../../core/errors.js'
import type { Extent } from '../nbd/backend.js'
import type { ChunkStore, ManifestStore } from '../contracts.js'
import type { DirtyChunk } from './dirty-chunk.js'
import { chunkPieces, layersNeeded, overlayLayers, type ChunkPiece, type DirtyMap } from './dirty-map.js'
import type { LookupCache } from './lookup-cache.js'

export interface ReaderDeps {
  dirty: DirtyMap
  lookups: LookupCache
  chunkStore: ChunkStore
  manifest: ManifestStore
  chunkSizeBytes: number
}

/**
 * Chunks one BLOCK_STATUS answer covers at most; the client asks again for the
 * rest (the protocol allows covering less than asked).
 */
export const EXTENTS_CHUNKS_MAX = 16384

interface PiecePlan {
  piece: ChunkPiece
  layers: DirtyChunk[]
  count: number
  needsStore: boolean
}

export async function readRange(deps: ReaderDeps, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const out = Buffer.alloc(lengthBytes)
  const root = deps.lookups.currentRoot
  const plans: PiecePlan[] = chunkPieces(offsetBytes, lengthBytes, deps.chunkSizeBytes).map((piece) => {
    const layers = deps.dirty.layers(piece.index)
    return { piece, layers, ...layersNeeded(layers, piece.start, piece.end) }
  })
  const fromStore = plans.filter((p) => p.needsStore)
  if (fromStore.length > 0) {
    const chunks = await fetchChunks(deps, root, fromStore.map((p) => p.piece.index))
    fromStore.forEach((p, i) => {
      const chunk = chunks[i]
      if (chunk !== undefined) out.set(chunk.subarray(p.piece.start, p.piece.end), p.piece.rangeOffset)
    })
  }
  for (const p of plans) overlayLayers(p.layers, p.count, out, p.piece.rangeOffset, p.piece.start, p.piece.end)
  return out
}

/** The stored chunks at `indexes` under `root` (undefined: no entry, reads as zeroes); each CID fetched once. */
async function fetchChunks(deps: ReaderDeps, root: CID | null, indexes: number[]): Promise<(Uint8Array | undefined)[]> {
  const cids = await deps.lookups.lookup(root, indexes)
  const keys = cids.map((cid) => (cid === undefined ? undefined : cidKey(cid)))
  const unique = new Map<string, CID>()
  cids.forEach((cid, i) => {
    if (cid !== undefined) unique.set(keys[i] as string, cid)
  })
  if (unique.size === 0) return cids.map(() => undefined)
  const fetched = await deps.chunkStore.getChunks([...unique.values()])
  assert(fetched.length === unique.size, `getChunks returned ${fetched.length} chunks for ${unique.size}`)
  const byCid = new Map<string, Uint8Array>()
  ;[...unique.keys()].forEach((key, i) => {
    const chunk = fetched[i] as Uint8Array
    assert(chunk.length === deps.chunkSizeBytes, `stored chunk of ${chunk.length} bytes, expected ${deps.chunkSizeBytes}`)
    byCid.set(key, chunk)
  })
  return keys.map((key) => (key === undefined ? undefined : byCid.get(key)))
}

/**
 * Allocation of a range, per chunk: a chunk that reads as zeroes without stored
 * data (never written, trimmed, zeroed) is a hole and zero; anything else is data.
 */
export async function extentsOf(deps: ReaderDeps, offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
  const chunkSize = deps.chunkSizeBytes
  const firstIndex = Math.floor(offsetBytes / chunkSize)
  const endBytes = Math.min(offsetBytes + lengthBytes, (firstIndex + EXTENTS_CHUNKS_MAX) * chunkSize)
  const pieces = chunkPieces(offsetBytes, endBytes - offsetBytes, chunkSize)
  const root = deps.lookups.currentRoot
  // Dirty state first (synchronously), then the stored entries of the same root.
  const dirtyState = pieces.map((p) => {
    const top = deps.dirty.layers(p.index)[0]
    return top === undefined ? undefined : top.isZero ? 'zero' : 'data'
  })
  const stored = new Set<number>()
  const lastIndex = (pieces[pieces.length - 1] as ChunkPiece).index
  for await (const [index] of deps.manifest.entries(root, firstIndex, lastIndex + 1)) stored.add(index)
  const out: Extent[] = []
  pieces.forEach((p, i) => {
    const state = dirtyState[i] ?? (stored.has(p.index) ? 'data' : 'zero')
    const hole = state === 'zero'
    const n = p.end - p.start
    const last = out[out.length - 1]
    if (last !== undefined && last.hole === hole) last.lengthBytes += n
    else out.push({ lengthBytes: n, hole, zero: hole })
  })
  return out
}
