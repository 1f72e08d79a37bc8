/**
 * Capacity allocation: how many bytes of shards this node accepts.
 *
 * The operator's DaemonSet is one template for every node, so it sends the rule
 * (fraction of free space, clamped to min and max) and each node applies it to
 * its own filesystem at start. Puts that would take the live shard bytes past
 * the allocation are refused with CapacityExceededError (RESOURCE_EXHAUSTED)
 * before anything is written. Enforcement wraps the shard store at the service
 * boundary, so the store itself stays unaware of it.
 */
import { statfs } from 'node:fs/promises'
import { Gauge, type Registry } from 'prom-client'
import { CairnError, ConfigError, assert } from '../core/errors.js'
import type { Shard, ShardAddress } from '../core/shard.js'
import type { DeleteOptions, GetResult, ListOptions, ListPage, PutResult, ShardInfo, ShardStore, StoreStats } from './shard-store.js'

/** A put would take this node past its allocation; nothing of the batch was stored. Retry on another node or after GC. */
export class CapacityExceededError extends CairnError {
  override readonly name = 'CapacityExceededError'
  readonly kind = 'resource-exhausted'
}

/** The allocation rule, as `--capacity-fraction`, `--capacity-min-bytes`, `--capacity-max-bytes` give it. */
export interface CapacityRule {
  /** Share of the space available to Cairn. @default 0.8 */
  fraction: number
  /** @default none */
  minBytes?: number | undefined
  /** @default none */
  maxBytes?: number | undefined
}

/**
 * The allocation for `availableBytes` (free space plus what Cairn already
 * stores there): fraction × available, clamped to [minBytes, maxBytes], and
 * never more than is available (a minimum the disk cannot hold would be a
 * promise the node breaks with ENOSPC; the operator's estimate caps the same way).
 * @throws ConfigError when the rule itself is inconsistent
 */
export function allocationBytes(rule: CapacityRule, availableBytes: number): number {
  if (!(rule.fraction > 0 && rule.fraction <= 1)) throw new ConfigError(`capacity fraction must be in (0, 1], got ${rule.fraction}`)
  if (rule.minBytes !== undefined && rule.maxBytes !== undefined && rule.minBytes > rule.maxBytes) {
    throw new ConfigError(`--capacity-min-bytes (${rule.minBytes}) exceeds --capacity-max-bytes (${rule.maxBytes})`)
  }
  assert(Number.isSafeInteger(availableBytes) && availableBytes >= 0, `available bytes must be a non-negative integer, got ${availableBytes}`)
  let bytes = Math.floor(availableBytes * rule.fraction)
  if (rule.minBytes !== undefined) bytes = Math.max(bytes, rule.minBytes)
  if (rule.maxBytes !== undefined) bytes = Math.min(bytes, rule.maxBytes)
  return Math.min(bytes, availableBytes)
}

/** Bytes an unprivileged process may still write on the filesystem holding `dir` (statfs bavail × bsize). */
export async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir)
  return Math.min(Number.MAX_SAFE_INTEGER, fs.bavail * fs.bsize)
}

/** Stats with the allocation: what ShardService Stats answers. */
export interface CapacityStats extends StoreStats {
  /** The allocation computed at start. */
  capacityBytes: number
  /** Live encoded shard bytes counted against it. */
  usedBytes: number
}

export interface CapacityGuardComponents {
  store: ShardStore
  /** Live encoded shard bytes stored now; read on every put, so it must be cheap. */
  usedBytes: () => number
}

/**
 * A ShardStore that refuses puts past the allocation and passes everything else
 * through. Bytes of puts in flight are reserved, so concurrent batches cannot
 * together overshoot. A batch that only fits once shards already stored are
 * discounted (idempotent re-puts take no new space) is checked precisely with
 * one index lookup; the common case costs an addition.
 */
export class CapacityGuard implements ShardStore {
  private capacity: number | undefined
  private reservedBytes = 0

  constructor(private readonly components: CapacityGuardComponents) {}

  /** Sets the allocation; puts are refused until it is set. */
  setCapacityBytes(bytes: number): void {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, `capacity must be a non-negative integer, got ${bytes}`)
    this.capacity = bytes
  }

  get capacityBytes(): number {
    return this.capacity ?? 0
  }

  usedBytes(): number {
    return this.components.usedBytes()
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  async putShards(shards: readonly Shard[]): Promise<PutResult> {
    const capacity = this.capacity
    if (capacity === undefined) throw new CapacityExceededError('capacity allocation not computed yet')
    let bytes = 0
    for (const s of shards) bytes += s.bytes.byteLength
    if (this.usedBytes() + this.reservedBytes + bytes > capacity) {
      const present = await this.components.store.hasShards(shards.map((s) => s.header))
      bytes = shards.reduce((sum, s, i) => (present[i] === true ? sum : sum + s.bytes.byteLength), 0)
      const used = this.usedBytes() + this.reservedBytes
      if (bytes > 0 && used + bytes > capacity) {
        throw new CapacityExceededError(`put of ${bytes} new bytes refused: ${used} of ${capacity} allocated bytes in use or reserved`)
      }
    }
    this.reservedBytes += bytes
    try {
      return await this.components.store.putShards(shards)
    } finally {
      this.reservedBytes -= bytes
    }
  }

  getShard(address: ShardAddress): Promise<Shard> {
    return this.components.store.getShard(address)
  }

  getShards(addresses: readonly ShardAddress[]): Promise<GetResult[]> {
    return this.components.store.getShards(addresses)
  }

  hasShards(addresses: readonly ShardAddress[]): Promise<boolean[]> {
    return this.components.store.hasShards(addresses)
  }

  deleteShards(addresses: readonly ShardAddress[], options?: DeleteOptions): Promise<number> {
    return this.components.store.deleteShards(addresses, options)
  }

  listShards(options?: ListOptions): Promise<ListPage> {
    return this.components.store.listShards(options)
  }

  chunkShards(chunkCid: Uint8Array): Promise<ShardInfo[]> {
    return this.components.store.chunkShards(chunkCid)
  }

  async stats(): Promise<CapacityStats> {
    return { ...(await this.components.store.stats()), capacityBytes: this.capacityBytes, usedBytes: this.usedBytes() }
  }
}

/** Registers `cairn_storage_node_capacity_bytes` and `cairn_storage_node_used_bytes`, read from the guard at scrape time. */
export function registerCapacityMetrics(registry: Registry, guard: CapacityGuard): void {
  const registers = [registry]
  new Gauge({
    name: 'cairn_storage_node_capacity_bytes',
    help: 'Bytes of shards this node accepts (its allocation, computed at start).',
    registers,
    collect() {
      this.set(guard.capacityBytes)
    },
  })
  new Gauge({
    name: 'cairn_storage_node_used_bytes',
    help: 'Live encoded shard bytes counted against the allocation.',
    registers,
    collect() {
      this.set(guard.usedBytes())
    },
  })
}
