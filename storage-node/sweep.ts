/**
 * The sweep half of garbage collection, run on each storage node: every shard
 * whose chunk CID the mark's Bloom filter does not hold, and whose last put is
 * before the cutoff, is deleted.
 *
 * The store is listed a page at a time (bounded memory whatever its size), and
 * each page's candidates are deleted with the cutoff passed down to the store,
 * which checks it atomically: a put that refreshed a shard after the listing (a
 * writer deduplicating against it) keeps it. The bytes come back when segment
 * compaction rewrites the segments (storage-node/compaction.ts).
 */
import { BloomFilter, type BloomFilterParts } from '../core/bloom-filter.js'
import { CairnError, InvalidArgumentError } from '../core/errors.js'
import type { ShardInfo, ShardStore } from './shard-store.js'

export interface SweepRequest {
  /** The marked chunk CIDs (binary). */
  marked: BloomFilterParts
  /** Only shards last put before this time may go: the mark's start minus the grace period. Must be > 0. */
  olderThanUnixMs: number
  /** Count what would go, delete nothing. */
  dryRun: boolean
}

export interface SweepResult {
  scannedShards: number
  /** Shards deleted (dry run: that would be deleted). */
  deletedShards: number
  /** Encoded bytes of those shards. */
  freedBytes: number
  /** Unmarked shards kept because they were put at or after the cutoff. */
  youngShards: number
}

export interface SweepOptions {
  /** Shards listed per page. @default 1024 */
  pageShards?: number
  /** Milliseconds since the epoch. @default Date.now */
  now?: () => number
  signal?: AbortSignal
}

/** The cutoff is in this node's future: the clocks disagree, and a shard being written could go. */
export class SweepCutoffError extends CairnError {
  override readonly name = 'SweepCutoffError'
  readonly kind = 'failed-precondition'
}

/** Too many sweeps are running or waiting on this node. */
export class SweepBusyError extends CairnError {
  override readonly name = 'SweepBusyError'
  readonly kind = 'resource-exhausted'
}

/** Checks a request before any shard is touched. */
export function validateSweep(req: SweepRequest, nowUnixMs: number): BloomFilter {
  if (!Number.isSafeInteger(req.olderThanUnixMs) || req.olderThanUnixMs <= 0) {
    throw new InvalidArgumentError(`olderThanUnixMs must be a positive integer, got ${req.olderThanUnixMs}`)
  }
  if (req.olderThanUnixMs > nowUnixMs) {
    throw new SweepCutoffError(`cutoff ${new Date(req.olderThanUnixMs).toISOString()} is after this node's clock ${new Date(nowUnixMs).toISOString()}`)
  }
  return BloomFilter.from(req.marked)
}

/** Sweeps `store`; see the module comment. */
export async function sweepShards(store: ShardStore, req: SweepRequest, options: SweepOptions = {}): Promise<SweepResult> {
  const now = options.now ?? Date.now
  const filter = validateSweep(req, now())
  const pageShards = options.pageShards ?? 1024
  const result: SweepResult = { scannedShards: 0, deletedShards: 0, freedBytes: 0, youngShards: 0 }
  let pageToken: string | undefined
  do {
    options.signal?.throwIfAborted()
    const page = await store.listShards({ pageSize: pageShards, ...(pageToken === undefined ? {} : { pageToken }) })
    result.scannedShards += page.shards.length
    const doomed: ShardInfo[] = []
    for (const s of page.shards) {
      if (filter.has(s.address.chunkCid)) continue
      if (s.lastPutUnixMs >= req.olderThanUnixMs) result.youngShards++
      else doomed.push(s)
    }
    if (doomed.length > 0) await deletePage(store, doomed, req, result)
    pageToken = page.nextPageToken
  } while (pageToken !== undefined)
  return result
}

async function deletePage(store: ShardStore, doomed: readonly ShardInfo[], req: SweepRequest, result: SweepResult): Promise<void> {
  const bytes = doomed.reduce((sum, s) => sum + s.sizeBytes, 0)
  if (req.dryRun) {
    result.deletedShards += doomed.length
    result.freedBytes += bytes
    return
  }
  const addresses = doomed.map((s) => s.address)
  const deleted = await store.deleteShards(addresses, { lastPutBeforeUnixMs: req.olderThanUnixMs })
  result.deletedShards += deleted
  if (deleted === doomed.length) {
    result.freedBytes += bytes
    return
  }
  // A put refreshed some between the listing and the delete: count only the ones that went.
  const present = await store.hasShards(addresses)
  doomed.forEach((s, i) => {
    if (!present[i]) result.freedBytes += s.sizeBytes
    else result.youngShards++
  })
}
