/**
 * ShardService over gRPC: a thin layer that validates each request, converts wire
 * objects to domain objects, calls the ShardStore, and maps errors through
 * core/grpc.ts. It holds no state of its own beyond the in-flight budget.
 */
import type { ServerDuplexStream, ServerUnaryCall, ServerWritableStream, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js'
import { status as Status } from '@grpc/grpc-js'
import type { Logger } from '../core/logger.js'
import { CairnError, ResourceExhaustedError, ShuttingDownError, errorKind } from '../core/errors.js'
import { grpcCodeForKind, toGrpcStatus } from '../core/grpc.js'
import { decodeShard, ShardCorruptError, ShardFormatError, validateAddress, type Shard, type ShardAddress } from '../core/shard.js'
import type { StorageNodeMetrics } from './metrics.js'
import { ShardLimitError, ShardRangeError, type NodeStats, type ShardStore, type StoreStats } from './shard-store.js'
import type {
  WireAddress,
  WireAddressesRequest,
  WireDeleteShardsRequest,
  WireGetShardRequest,
  WireGetShardResponse,
  WireGetShardsResponse,
  WireGetShardsResult,
  WireListShardsRequest,
  WireListShardsResponse,
  WirePutShardsRequest,
  WirePutShardsResponse,
  WireStatsResponse,
  WireSweepRequest,
  WireSweepResponse,
} from './proto.js'
import { sweepShards, SweepBusyError } from './sweep.js'

export interface ShardServiceLimits {
  /** Most shards (or addresses) in one batch. @default 1024 */
  maxBatchShards: number
  /** Most encoded bytes in one put batch. @default 33554432 (32 MiB) */
  maxBatchBytes: number
  /** Largest encoded shard accepted. @default 4194304 (4 MiB) */
  maxShardBytes: number
  /** Requests (and put batches) served at once; more get RESOURCE_EXHAUSTED. @default 256 */
  maxInFlightRequests: number
  /** Put batches one stream may have waiting for their fsync before the node stops reading it. @default 8 */
  putStreamWindow: number
}

export const defaultShardServiceLimits: ShardServiceLimits = {
  maxBatchShards: 1024,
  maxBatchBytes: 32 * 1024 * 1024,
  maxShardBytes: 4 * 1024 * 1024,
  maxInFlightRequests: 256,
  putStreamWindow: 8,
}

export interface ShardServiceComponents {
  store: ShardStore
  logger: Logger
  metrics?: StorageNodeMetrics
  /** What the node reports beyond its store in Stats (mesh peer id, scrub and repair counters). @default nothing */
  nodeStats?: () => Omit<NodeStats, keyof StoreStats>
}

export interface ShardServiceHandle {
  /** The handler table for `server.addService(loadShardService().service, …)`. */
  handlers: UntypedServiceImplementation
  /**
   * Starts shutdown: put streams finish the batches they have in flight, then end with
   * UNAVAILABLE instead of waiting for clients that keep sending.
   */
  drain(): void
}

/** Builds the ShardService handlers over a store. */
export function createShardService(limits: ShardServiceLimits, components: ShardServiceComponents): ShardServiceHandle {
  const { store, logger, metrics } = components
  let inFlight = 0
  const putStreams = new Set<PutStreamState>()
  let draining = false
  // Sweeps run one at a time (two collectors, say the operator's and a manual one, take turns); a few may wait.
  let sweepTail: Promise<unknown> = Promise.resolve()
  let sweepsQueued = 0

  /** Runs one request under the in-flight budget, timing it and logging why it was rejected. */
  async function serve<T>(method: string, work: () => Promise<T>): Promise<T> {
    const stopTimer = metrics?.requestSeconds.startTimer({ method })
    if (inFlight >= limits.maxInFlightRequests) {
      stopTimer?.({ code: Status[Status.RESOURCE_EXHAUSTED] })
      throw new ResourceExhaustedError(`${inFlight} requests in flight; limit ${limits.maxInFlightRequests}`)
    }
    inFlight += 1
    metrics?.inFlightRequests.set(inFlight)
    try {
      const result = await work()
      stopTimer?.({ code: Status[Status.OK] })
      return result
    } catch (err) {
      stopTimer?.({ code: Status[grpcCodeForKind(errorKind(err))] })
      if (errorKind(err) === 'internal') logger.error({ method, err }, 'request failed')
      else logger.info({ method, reason: (err as Error).message, error: (err as Error).name }, 'request rejected')
      throw err
    } finally {
      inFlight -= 1
      metrics?.inFlightRequests.set(inFlight)
    }
  }

  function unary<Req, Res>(method: string, handle: (req: Req) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      serve(method, () => handle(call.request)).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toGrpcStatus(err)),
      )
    }
  }

  const handlers: UntypedServiceImplementation = {
    putShards: (call: ServerDuplexStream<WirePutShardsRequest, WirePutShardsResponse>) => {
      const state = handlePutStream(call, limits, serve, store, () => draining)
      putStreams.add(state)
      call.once('finish', () => putStreams.delete(state))
      call.once('cancelled', () => putStreams.delete(state))
    },
    getShard: unary('GetShard', (req: WireGetShardRequest) => getShard(req, store)),
    getShards: (call: ServerWritableStream<WireAddressesRequest, WireGetShardsResponse>) => {
      serve('GetShards', () => streamShards(call, limits, store)).then(
        () => call.end(),
        (err: unknown) => call.emit('error', toGrpcStatus(err)),
      )
    },
    hasShards: unary('HasShards', async (req: WireAddressesRequest) => ({ present: await store.hasShards(toAddresses(req.addresses, limits)) })),
    deleteShards: unary('DeleteShards', async (req: WireDeleteShardsRequest) => {
      const addresses = toAddresses(req.addresses, limits)
      const options = req.lastPutBeforeUnixMs > 0 ? { lastPutBeforeUnixMs: req.lastPutBeforeUnixMs } : {}
      return { deletedCount: await store.deleteShards(addresses, options) }
    }),
    listShards: unary('ListShards', (req: WireListShardsRequest) => listShards(req, store)),
    stats: unary('Stats', async (): Promise<WireStatsResponse> => ({ ...(await store.stats()), ...components.nodeStats?.() })),
    sweep: unary('Sweep', async (req: WireSweepRequest): Promise<WireSweepResponse> => {
      const request = toSweepRequest(req)
      if (sweepsQueued >= SWEEPS_QUEUED_MAX) throw new SweepBusyError(`${sweepsQueued} sweeps are running or waiting on this node`)
      sweepsQueued += 1
      const run = sweepTail.then(() => sweepShards(store, request, { pageShards: limits.maxBatchShards }))
      sweepTail = run.catch(() => undefined)
      try {
        return await run
      } finally {
        sweepsQueued -= 1
      }
    }),
  }
  return {
    handlers,
    drain() {
      draining = true
      for (const stream of putStreams) stream.finishIfDone()
    },
  }
}

interface PutStreamState {
  finishIfDone(): void
}

type Serve = <T>(method: string, work: () => Promise<T>) => Promise<T>

/**
 * Each request message is a batch, acknowledged after its fsync. A bad batch ends the
 * stream with its status; batches acknowledged before it stay stored. The stream stops
 * being read while `putStreamWindow` batches await their fsync: backpressure, not refusal.
 */
function handlePutStream(
  call: ServerDuplexStream<WirePutShardsRequest, WirePutShardsResponse>,
  limits: ShardServiceLimits,
  serve: Serve,
  store: ShardStore,
  draining: () => boolean,
): PutStreamState {
  let waiting = 0
  let ended = false
  let failed = false
  const finishIfDone = (): void => {
    if (failed || waiting > 0) return
    if (ended) call.end()
    else if (draining()) {
      // Batches the client sends from now on are not acknowledged; it retries them elsewhere or later.
      failed = true
      call.emit('error', toGrpcStatus(new ShuttingDownError('storage node is shutting down')))
    }
  }
  call.on('data', (req: WirePutShardsRequest) => {
    if (failed || draining()) return
    waiting += 1
    if (waiting >= limits.putStreamWindow) call.pause()
    serve('PutShards', async () => store.putShards(toPutBatch(req, limits))).then(
      (result) => {
        if (!failed) call.write({ batchId: req.batchId, writtenCount: result.writtenCount, existingCount: result.existingCount })
      },
      (err: unknown) => {
        if (failed) return
        failed = true
        call.emit('error', toGrpcStatus(err))
      },
    ).finally(() => {
      waiting -= 1
      if (waiting < limits.putStreamWindow && !failed) call.resume()
      finishIfDone()
    })
  })
  call.on('end', () => {
    ended = true
    finishIfDone()
  })
  return { finishIfDone }
}

/** Validates a put batch against the limits and decodes every shard; a CRC mismatch in a request is the sender's fault. */
function toPutBatch(req: WirePutShardsRequest, limits: ShardServiceLimits): Shard[] {
  if (!Number.isSafeInteger(req.batchId)) throw new ShardFormatError('batch_id out of range')
  if (req.shards.length > limits.maxBatchShards) throw new ShardLimitError(`batch of ${req.shards.length} shards; limit ${limits.maxBatchShards}`)
  let bytes = 0
  for (const s of req.shards) bytes += s.length
  if (bytes > limits.maxBatchBytes) throw new ShardLimitError(`batch of ${bytes} bytes; limit ${limits.maxBatchBytes}`)
  return req.shards.map((bytes, i) => {
    if (bytes.length > limits.maxShardBytes) throw new ShardLimitError(`shard ${i} is ${bytes.length} bytes; limit ${limits.maxShardBytes}`)
    try {
      return decodeShard(bytes)
    } catch (err) {
      if (err instanceof ShardCorruptError) throw new ShardFormatError(`shard ${i} fails its CRC: ${err.message}`, { cause: err })
      if (err instanceof ShardFormatError) throw new ShardFormatError(`shard ${i}: ${err.message}`, { cause: err })
      throw err
    }
  })
}

function toAddress(wire: WireAddress | null | undefined, field: string): ShardAddress {
  if (wire == null) throw new ShardFormatError(`missing ${field}`)
  const address = { chunkCid: new Uint8Array(wire.chunkCid.buffer, wire.chunkCid.byteOffset, wire.chunkCid.byteLength), index: wire.index }
  validateAddress(address)
  return address
}

function toAddresses(wire: ReadonlyArray<WireAddress | null>, limits: ShardServiceLimits): ShardAddress[] {
  if (wire.length > limits.maxBatchShards) throw new ShardLimitError(`batch of ${wire.length} addresses; limit ${limits.maxBatchShards}`)
  return wire.map((a, i) => toAddress(a, `addresses[${i}]`))
}

async function getShard(req: WireGetShardRequest, store: ShardStore): Promise<Partial<WireGetShardResponse>> {
  const address = toAddress(req.address, 'address')
  const range = req.payloadRange
  if (range !== null && !(Number.isSafeInteger(range.offset) && Number.isSafeInteger(range.length) && range.length > 0)) {
    throw new ShardRangeError(`bad payload range offset=${range.offset} length=${range.length}`)
  }
  // The whole shard is read and verified even for a range: bytes failing the CRC never leave.
  const shard = await store.getShard(address)
  if (range === null) return { shard: Buffer.from(shard.bytes.buffer, shard.bytes.byteOffset, shard.bytes.byteLength) }
  if (range.offset + range.length > shard.payload.length) {
    throw new ShardRangeError(`range [${range.offset}, ${range.offset + range.length}) exceeds payload of ${shard.payload.length} bytes`)
  }
  const slice = shard.payload.subarray(range.offset, range.offset + range.length)
  return { payloadRange: Buffer.from(slice.buffer, slice.byteOffset, slice.byteLength) }
}

/** Reads in slices so a large batch never holds every shard in memory, and honours the stream's backpressure. */
async function streamShards(call: ServerWritableStream<WireAddressesRequest, WireGetShardsResponse>, limits: ShardServiceLimits, store: ShardStore): Promise<void> {
  const addresses = toAddresses(call.request.addresses, limits)
  const slice = 64
  let message: WireGetShardsResponse = { results: [] }
  let messageBytes = 0
  const send = async (): Promise<void> => {
    const full = message
    message = { results: [] }
    messageBytes = 0
    if (!call.write(full)) await drainOrCancel(call)
  }
  for (let start = 0; start < addresses.length; start += slice) {
    const results = await store.getShards(addresses.slice(start, start + slice))
    for (let i = 0; i < results.length; i++) {
      if (call.cancelled) return
      const r = results[i] as (typeof results)[number]
      if (r.ok) {
        message.results.push({ position: start + i, shard: Buffer.from(r.shard.bytes.buffer, r.shard.bytes.byteOffset, r.shard.bytes.byteLength) })
        messageBytes += r.shard.bytes.byteLength
      } else {
        message.results.push({ position: start + i, error: shardError(r.error) })
      }
      if (messageBytes >= GET_SHARDS_MESSAGE_BYTES) await send()
    }
  }
  if (message.results.length > 0 && !call.cancelled) await send()
}

/** Results packed into one GetShards message before it is sent. */
const GET_SHARDS_MESSAGE_BYTES = 1024 * 1024

/** Waits for the stream to drain or be cancelled, leaving no listener behind. */
function drainOrCancel(call: ServerWritableStream<WireAddressesRequest, WireGetShardsResponse>): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      call.off('drain', done)
      call.off('cancelled', done)
      resolve()
    }
    call.once('drain', done)
    call.once('cancelled', done)
  })
}

function shardError(err: CairnError): WireGetShardsResult['error'] {
  return { code: grpcCodeForKind(err.kind), name: err.name, message: err.message }
}

/** Sweeps running or waiting on one node. */
const SWEEPS_QUEUED_MAX = 4

function toSweepRequest(req: WireSweepRequest): Parameters<typeof sweepShards>[1] {
  if (req.marked == null) throw new ShardFormatError('missing marked')
  const { version, salt, hashCount, bits } = req.marked
  return { marked: { version, salt: new Uint8Array(salt), hashCount, bits: new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength) }, olderThanUnixMs: req.olderThanUnixMs, dryRun: req.dryRun }
}

async function listShards(req: WireListShardsRequest, store: ShardStore): Promise<WireListShardsResponse> {
  const page = await store.listShards({
    pageToken: req.pageToken === '' ? undefined : req.pageToken,
    pageSize: req.pageSize === 0 ? undefined : req.pageSize,
    cidPrefix: req.cidPrefix.length > 0 ? req.cidPrefix : undefined,
  })
  return {
    shards: page.shards.map((s) => ({ ...s, address: { chunkCid: Buffer.from(s.address.chunkCid), index: s.address.index } })),
    nextPageToken: page.nextPageToken ?? '',
  }
}
