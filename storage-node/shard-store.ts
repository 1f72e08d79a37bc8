/**
 * The shard store contract: what the gRPC service, the scrubber, repair and GC
 * workers use. Every backend passes storage-node/shard-store.conformance.ts.
 */
import type { Shard, ShardAddress } from '../core/shard.js'
import type { Startable } from '../core/startable.js'
import { CairnError } from '../core/errors.js'

export interface PutResult {
  /** Shards newly written. */
  writtenCount: number
  /** Shards already stored; their last-put time was refreshed. */
  existingCount: number
}

/** A byte range of a shard's payload. */
export interface PayloadRange {
  offsetBytes: number
  lengthBytes: number
}

export interface ShardInfo {
  address: ShardAddress
  /** Encoded size on disk, header included. */
  sizeBytes: number
  lastPutUnixMs: number
  /** A read found the stored copy bad; a new put of the shard replaces it. */
  corrupt: boolean
  /**
   * Where the shard stands in this store's listing order (the segment store: its
   * location); only comparable with positions from the same store.
   */
  position?: number
}

export interface ListOptions {
  /** Opaque token from the previous page; undefined for the first. */
  pageToken?: string
  /** @default the store's `listPageSizeDefault` */
  pageSize?: number
  /**
   * Only shards whose binary chunk CID starts with these bytes. The store filters a
   * bounded window of its listing per call, so a page may come back short, even empty,
   * with a next token: walk until there is none.
   */
  cidPrefix?: Uint8Array
}

export interface ListPage {
  shards: ShardInfo[]
  /** Undefined on the last page. */
  nextPageToken?: string
}

export interface DeleteOptions {
  /** Keep shards put at or after this time (GC's grace rule, checked atomically). */
  lastPutBeforeUnixMs?: number
}

export interface StoreStats {
  shardCount: number
  shardBytes: number
  segmentCount: number
  segmentBytes: number
  corruptShardCount: number
  /** The node's allocation (storage-node/capacity.ts); absent from a bare store. */
  capacityBytes?: number
  /** Live encoded bytes counted against the allocation. */
  usedBytes?: number
}

/** What a storage node reports about itself beyond its store (the Stats RPC). */
export interface NodeStats extends StoreStats {
  /** Its libp2p mesh peer id; absent when it runs no mesh. */
  peerId?: string
  scrub?: ScrubStats
  repair?: RepairStats
}

export interface ScrubStats {
  scrubbedShards: number
  scrubbedBytes: number
  badShards: number
  passesCompleted: number
  /** 0 until the first pass completes. */
  lastPassCompletedUnixMs: number
}

export interface RepairStats {
  /** Shards known to need a rebuild or a move, not yet done. */
  backlogShards: number
  repairedShards: number
  repairedBytes: number
  movedShards: number
  movedBytes: number
  passesCompleted: number
  /** 0 until the first pass completes. */
  lastPassCompletedUnixMs: number
}

/** One address's outcome in a batch read. */
export type GetResult = { ok: true; shard: Shard } | { ok: false; error: CairnError }

export interface ShardStore extends Startable {
  /** Durably stores every shard (already decoded and verified); resolves only after the fsync that covers them. Idempotent. */
  putShards(shards: readonly Shard[]): Promise<PutResult>
  /** The whole verified shard. Throws ShardNotFoundError or ShardCorruptError. */
  getShard(address: ShardAddress): Promise<Shard>
  /** Each address's verified shard or its own error; one bad shard never fails the others. */
  getShards(addresses: readonly ShardAddress[]): Promise<GetResult[]>
  /** Whether each shard is stored and not known corrupt, in order. */
  hasShards(addresses: readonly ShardAddress[]): Promise<boolean[]>
  /** Removes shards; absent ones are ignored. Resolves with the count removed once durable. */
  deleteShards(addresses: readonly ShardAddress[], options?: DeleteOptions): Promise<number>
  /**
   * Stored shards a page at a time, in an order where a shard only ever moves later
   * (the segment store: location order; compaction and repair puts move shards to new
   * segments). A walk sees every shard stored throughout it, one that moved possibly twice.
   */
  listShards(options?: ListOptions): Promise<ListPage>
  /** Every stored shard of one chunk (indexes below MAX_TOTAL_SHARDS), corrupt ones included, in listing order. */
  chunkShards(chunkCid: Uint8Array): Promise<ShardInfo[]>
  stats(): Promise<StoreStats>
}

/** No shard at this address. */
export class ShardNotFoundError extends CairnError {
  override readonly name = 'ShardNotFoundError'
  readonly kind = 'not-found'
}

/** A batch or shard exceeds the node's configured limits; split it and retry. */
export class ShardLimitError extends CairnError {
  override readonly name = 'ShardLimitError'
  readonly kind = 'invalid-argument'
}

/** A payload range lies outside the shard's payload. */
export class ShardRangeError extends CairnError {
  override readonly name = 'ShardRangeError'
  readonly kind = 'invalid-argument'
}

/** A list page token this store did not issue. */
export class PageTokenError extends CairnError {
  override readonly name = 'PageTokenError'
  readonly kind = 'invalid-argument'
}

/** The data directory is unusable: locked by another process, or missing segment data. */
export class DataDirError extends CairnError {
  override readonly name = 'DataDirError'
  readonly kind = 'failed-precondition'
}

/** The disk is full; nothing was stored. */
export class DiskFullError extends CairnError {
  override readonly name = 'DiskFullError'
  readonly kind = 'resource-exhausted'
}
