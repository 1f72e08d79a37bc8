/**
 * ShardClient: how other components talk to a storage node. Returns domain objects
 * and typed errors (core/grpc.ts) and verifies every shard it receives, so a bad
 * network or a bad node can never hand corrupt bytes to the caller.
 */
import { credentials as grpcCredentials, type ChannelCredentials, type ClientDuplexStream, type Client as GrpcClient } from '@grpc/grpc-js'
import { callUnary, clientChannelOptions, fromGrpcError, kindForGrpcCode, RemoteError, type CairnErrorClass } from '../core/grpc.js'
import { UnauthenticatedError } from './auth.js'
import { CapacityExceededError } from './capacity.js'
import { CairnError, InvalidArgumentError, ResourceExhaustedError, ShuttingDownError } from '../core/errors.js'
import { decodeShard, ShardCorruptError, ShardFormatError, type Shard, type ShardAddress } from '../core/shard.js'
import { SweepBusyError, SweepCutoffError, type SweepRequest, type SweepResult } from './sweep.js'
import { loadShardService, type WireSweepResponse, type WireGetShardResponse, type WireGetShardsResponse, type WireGetShardsResult, type WireListShardsResponse, type WirePutShardsResponse, type WireStatsResponse } from './proto.js'
import {
  DataDirError,
  DiskFullError,
  PageTokenError,
  ShardLimitError,
  ShardNotFoundError,
  ShardRangeError,
  type DeleteOptions,
  type GetResult,
  type ListOptions,
  type ListPage,
  type PayloadRange,
  type PutResult,
  type StoreStats,
} from './shard-store.js'

/** Errors a storage node sends that the client rebuilds as their own classes. */
export const SHARD_SERVICE_ERRORS: readonly CairnErrorClass[] = [
  ShardFormatError,
  ShardCorruptError,
  ShardNotFoundError,
  ShardLimitError,
  ShardRangeError,
  PageTokenError,
  DiskFullError,
  DataDirError,
  ResourceExhaustedError,
  ShuttingDownError,
  InvalidArgumentError,
  CapacityExceededError,
  UnauthenticatedError,
  SweepBusyError,
  SweepCutoffError,
]

export interface ShardClientInit {
  /** `host:port` of the node's gRPC listener. */
  address: string
  /** @default insecure (loopback and tests only) */
  credentials?: ChannelCredentials
  /** Deadline for each unary call and each put batch. @default 30000 */
  deadlineMs?: number
  /** Must be at least the node's largest batch. @default 67108864 (64 MiB) */
  maxMessageBytes?: number
  /** Cluster token sent as `authorization: Bearer …` on every call. @default none */
  token?: string
}


export class ShardClient {
  private readonly client: GrpcClient
  private readonly deadlineMs: number
  private nextBatchId = 1

  constructor(init: ShardClientInit) {
    const { Client } = loadShardService()
    this.client = new Client(init.address, init.credentials ?? grpcCredentials.createInsecure(), clientChannelOptions(init))
    this.deadlineMs = init.deadlineMs ?? 30_000
  }

  close(): void {
    this.client.close()
  }

  private unary<T>(method: string, request: unknown): Promise<T> {
    return callUnary<T>(this.client, method, request, this.deadlineMs, SHARD_SERVICE_ERRORS)
  }

  /** Stores one batch and resolves after the node fsynced it. */
  async putShards(shards: readonly Shard[]): Promise<PutResult> {
    const stream = this.openPutStream()
    try {
      return await stream.put(shards)
    } finally {
      stream.close()
    }
  }

  /** A stream of put batches: each `put` resolves when the node acknowledged that batch's fsync. */
  openPutStream(): PutStream {
    const call = (this.client as unknown as { putShards: () => ClientDuplexStream<unknown, WirePutShardsResponse> }).putShards()
    return new PutStream(call, () => this.nextBatchId++)
  }

  /** The whole shard, verified here as well as on the node. */
  async getShard(address: ShardAddress): Promise<Shard> {
    const res = await this.unary<WireGetShardResponse>('getShard', { address: toWire(address) })
    return verifyReceived(res.shard, address)
  }

  /** A byte range of a shard's payload (the node verified the whole shard before sending it). */
  async getPayloadRange(address: ShardAddress, range: PayloadRange): Promise<Uint8Array> {
    const res = await this.unary<WireGetShardResponse>('getShard', {
      address: toWire(address),
      payloadRange: { offset: range.offsetBytes, length: range.lengthBytes },
    })
    return res.payloadRange
  }

  /** Many shards in one call: each verified shard, or that shard's own typed error. */
  getShards(addresses: readonly ShardAddress[]): Promise<GetResult[]> {
    const results: Array<GetResult | undefined> = new Array(addresses.length)
    const call = (this.client as unknown as { getShards: (req: unknown, options: { deadline: number }) => NodeJS.ReadableStream }).getShards(
      { addresses: addresses.map(toWire) },
      { deadline: Date.now() + this.deadlineMs },
    )
    return new Promise<GetResult[]>((resolve, reject) => {
      call.on('data', (msg: WireGetShardsResponse) => {
        for (const r of msg.results) {
          const address = addresses[r.position]
          if (address === undefined) continue
          results[r.position] = r.result === 'shard' ? verifyResult(r.shard as Buffer, address) : { ok: false, error: remoteShardError(r.error) }
        }
      })
      call.on('error', (err) => reject(fromGrpcError(err, SHARD_SERVICE_ERRORS)))
      call.on('end', () => {
        const missing = results.findIndex((r) => r === undefined)
        if (missing >= 0) reject(new RemoteError('internal', undefined, `node sent no result for address ${missing}`))
        else resolve(results as GetResult[])
      })
    })
  }

  async hasShards(addresses: readonly ShardAddress[]): Promise<boolean[]> {
    const res = await this.unary<{ present: boolean[] }>('hasShards', { addresses: addresses.map(toWire) })
    return res.present
  }

  async deleteShards(addresses: readonly ShardAddress[], options: DeleteOptions = {}): Promise<number> {
    const res = await this.unary<{ deletedCount: number }>('deleteShards', {
      addresses: addresses.map(toWire),
      lastPutBeforeUnixMs: options.lastPutBeforeUnixMs ?? 0,
    })
    return res.deletedCount
  }

  async listShards(options: ListOptions = {}): Promise<ListPage> {
    const res = await this.unary<WireListShardsResponse>('listShards', {
      pageToken: options.pageToken ?? '',
      pageSize: options.pageSize ?? 0,
      cidPrefix: options.cidPrefix ?? new Uint8Array(0),
    })
    const shards = res.shards.map((s) => ({ ...s, address: { chunkCid: new Uint8Array(s.address.chunkCid), index: s.address.index } }))
    return res.nextPageToken === '' ? { shards } : { shards, nextPageToken: res.nextPageToken }
  }

  /** Garbage collection's sweep on this node (storage-node/sweep.ts); it may run long, hence its own deadline. */
  async sweep(request: SweepRequest, options: { deadlineMs?: number } = {}): Promise<SweepResult> {
    const { marked } = request
    const wire = { marked: { version: marked.version, salt: marked.salt, hashCount: marked.hashCount, bits: marked.bits }, olderThanUnixMs: request.olderThanUnixMs, dryRun: request.dryRun }
    const res = await callUnary<WireSweepResponse>(this.client, 'sweep', wire, options.deadlineMs ?? 600_000, SHARD_SERVICE_ERRORS)
    return { scannedShards: res.scannedShards, deletedShards: res.deletedShards, freedBytes: res.freedBytes, youngShards: res.youngShards }
  }

  async stats(): Promise<StoreStats> {
    return { ...(await this.unary<WireStatsResponse>('stats', {})) }
  }
}

/** One PutShards stream; batches may be in flight together, acks are matched by batch id. */
export class PutStream {
  private readonly waiting = new Map<number, { resolve: (r: PutResult) => void; reject: (err: unknown) => void }>()
  private failure: CairnError | undefined

  constructor(
    private readonly call: ClientDuplexStream<unknown, WirePutShardsResponse>,
    private readonly batchId: () => number,
  ) {
    call.on('data', (res: WirePutShardsResponse) => {
      const w = this.waiting.get(res.batchId)
      this.waiting.delete(res.batchId)
      w?.resolve({ writtenCount: res.writtenCount, existingCount: res.existingCount })
    })
    call.on('error', (err) => this.fail(fromGrpcError(err, SHARD_SERVICE_ERRORS)))
    call.on('end', () => this.fail(new RemoteError('unavailable', undefined, 'put stream ended before every batch was acknowledged')))
  }

  private fail(err: CairnError): void {
    this.failure ??= err
    for (const w of this.waiting.values()) w.reject(err)
    this.waiting.clear()
  }

  /** Sends one batch; resolves once the node acknowledged its fsync. */
  put(shards: readonly Shard[]): Promise<PutResult> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    const batchId = this.batchId()
    return new Promise<PutResult>((resolve, reject) => {
      this.waiting.set(batchId, { resolve, reject })
      this.call.write({ batchId, shards: shards.map((s) => s.bytes) })
    })
  }

  /** Sends raw encoded bytes as a batch: for tests of the node's validation. */
  putRaw(shards: readonly Uint8Array[]): Promise<PutResult> {
    return this.put(shards.map((bytes) => ({ bytes }) as Shard))
  }

  /** Half-closes the stream; batches already sent are still acknowledged. */
  close(): void {
    this.call.end()
  }
}

function toWire(address: ShardAddress): { chunkCid: Uint8Array; index: number } {
  return { chunkCid: address.chunkCid, index: address.index }
}

function verifyReceived(bytes: Uint8Array, address: ShardAddress): Shard {
  let shard: Shard
  try {
    shard = decodeShard(bytes)
  } catch (err) {
    // Bytes from a node that do not parse are corruption on the way, not a bad request.
    if (err instanceof ShardFormatError) throw new ShardCorruptError(`received shard does not parse: ${err.message}`, { cause: err })
    throw err
  }
  const same = shard.header.index === address.index && Buffer.from(shard.header.chunkCid).equals(Buffer.from(address.chunkCid))
  if (!same) throw new ShardCorruptError('node returned a different shard than asked for')
  return shard
}

function verifyResult(bytes: Buffer, address: ShardAddress): GetResult {
  try {
    return { ok: true, shard: verifyReceived(bytes, address) }
  } catch (err) {
    return { ok: false, error: err instanceof CairnError ? err : new ShardCorruptError('received shard does not parse', { cause: err }) }
  }
}

function remoteShardError(wire: WireGetShardsResult['error']): CairnError {
  if (wire == null) return new RemoteError('internal', undefined, 'node sent an empty result')
  for (const Class of SHARD_SERVICE_ERRORS) {
    const candidate = new Class(wire.message)
    if (candidate.name === wire.name) return candidate
  }
  return new RemoteError(kindForGrpcCode(wire.code), wire.name, wire.message)
}
