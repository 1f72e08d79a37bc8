/**
 * What the storage mesh offers the durability services (scrub, repair,
 * rebalance) that run on a storage node. The libp2p mesh implements it
 * (storage-node/mesh/); the services depend only on this contract, so they can
 * be tested against stores in one process and run over the network unchanged.
 *
 * Members are named by their cluster-map id. Every call is refused with a typed
 * error (core/errors.ts, kind `unavailable`) when the member is not in the current
 * map, has no mesh address, or cannot be reached; callers retry on a later pass.
 */
import type { Shard, ShardAddress } from '../../core/shard.js'
import type { GetResult } from '../shard-store.js'

export interface PeerShards {
  /** Whether the member holds each shard, stored and not known corrupt, in order. */
  has(memberId: string, addresses: readonly ShardAddress[], options?: PeerCallOptions): Promise<boolean[]>
  /** Each shard, verified by the holder (CRC) and again on arrival, or its own error. */
  get(memberId: string, addresses: readonly ShardAddress[], options?: PeerCallOptions): Promise<GetResult[]>
  /** Stores the shards on the member; resolves only once they are durable there. Idempotent. */
  put(memberId: string, shards: readonly Shard[], options?: PeerCallOptions): Promise<void>
}

export interface PeerCallOptions {
  signal?: AbortSignal
}

/** Each member's liveness as this node sees it (heartbeats on the mesh). */
export interface PeerLiveness {
  /** True when the member answered a heartbeat recently; this node itself is always alive. */
  isAlive(memberId: string): boolean
  /** Milliseconds since the member last answered; undefined if it never has. */
  silentForMs(memberId: string): number | undefined
}
