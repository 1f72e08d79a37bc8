/**
 * One ShardClient per storage-node address, created on first use and closed on
 * stop, so every chunk-store call to a node shares its HTTP/2 connection.
 */
import type { ChannelCredentials } from '@grpc/grpc-js'
import type { ClusterMember } from '../../core/cluster-map.js'
import { InvalidArgumentError, ShuttingDownError } from '../../core/errors.js'
import type { Startable } from '../../core/startable.js'
import { ShardClient } from '../../storage-node/shard-client.js'

/** What the chunk store needs from a storage node. */
export type ShardNodeClient = Pick<ShardClient, 'putShards' | 'getShards' | 'hasShards'>

export interface NodeClientPoolInit {
  /** @default insecure (loopback and tests only) */
  credentials?: ChannelCredentials
  /** Deadline of each request to a node. @default 10000 */
  requestDeadlineMs?: number
  /** Most shards (or addresses) in one request; at most the nodes' `maxBatchShards`. @default 1024 */
  batchShardsMax?: number
  /** Most encoded bytes in one put batch; at most the nodes' `maxBatchBytes`. @default 33554432 (32 MiB) */
  batchBytesMax?: number
  /** Clients kept open; the least recently used beyond this are closed. @default 1024 */
  clientsMax?: number
  /** Cluster token sent on every call (storage nodes that have one configured require it). @default none */
  token?: string
}

export interface NodeClientPool extends Startable {
  /** The client of the member's current address. */
  client(member: ClusterMember): ShardNodeClient
  readonly requestDeadlineMs: number
  readonly batchShardsMax: number
  readonly batchBytesMax: number
}

/** Creates the pool of real gRPC clients. */
export function createNodeClientPool(init: NodeClientPoolInit = {}): NodeClientPool {
  return new GrpcNodeClientPool(init)
}

class GrpcNodeClientPool implements NodeClientPool {
  readonly requestDeadlineMs: number
  readonly batchShardsMax: number
  readonly batchBytesMax: number
  readonly #credentials: ChannelCredentials | undefined
  readonly #token: string | undefined
  readonly #clientsMax: number
  readonly #clients = new Map<string, ShardClient>()
  #stopped = false

  constructor(init: NodeClientPoolInit) {
    this.requestDeadlineMs = init.requestDeadlineMs ?? 10_000
    this.batchShardsMax = init.batchShardsMax ?? 1024
    this.batchBytesMax = init.batchBytesMax ?? 32 * 1024 * 1024
    this.#clientsMax = init.clientsMax ?? 1024
    this.#credentials = init.credentials
    this.#token = init.token
    for (const [key, v] of Object.entries({ requestDeadlineMs: this.requestDeadlineMs, batchShardsMax: this.batchShardsMax, batchBytesMax: this.batchBytesMax, clientsMax: this.#clientsMax })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${key} must be a positive integer, got ${v}`)
    }
  }

  async start(): Promise<void> {}

  client(member: ClusterMember): ShardNodeClient {
    if (this.#stopped) throw new ShuttingDownError('node client pool is stopped')
    // Keyed by address: a member that moved gets a new connection, the old one ages out.
    let client = this.#clients.get(member.address)
    if (client !== undefined) {
      this.#clients.delete(member.address)
    } else {
      client = new ShardClient({
        address: member.address,
        deadlineMs: this.requestDeadlineMs,
        maxMessageBytes: this.batchBytesMax + 1024 * 1024,
        ...(this.#credentials === undefined ? {} : { credentials: this.#credentials }),
        ...(this.#token === undefined ? {} : { token: this.#token }),
      })
    }
    this.#clients.set(member.address, client)
    if (this.#clients.size > this.#clientsMax) {
      const [oldest, old] = this.#clients.entries().next().value as [string, ShardClient]
      this.#clients.delete(oldest)
      old.close()
    }
    return client
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const c of this.#clients.values()) c.close()
    this.#clients.clear()
  }
}
