/**
 * The serving side of `/cairn/shards/1.0.0` (wire format in codec.ts): reads one
 * request, runs it against this node's store, writes the response. Every failure,
 * from a malformed frame to a store error, becomes an error frame and a closed
 * stream; nothing a peer sends can throw out of here.
 */
import type { Logger } from '../../core/logger.js'
import { decodeShard, type Shard, type ShardAddress } from '../../core/shard.js'
import { errorKind } from '../../core/errors.js'
import type { ShardStore } from '../shard-store.js'
import {
  STATUS_ITEM_ERROR, STATUS_OK, STATUS_REQUEST_ERROR, decodeAddresses, decodeHeader, encodeError, encodeStatus, type ShardOp,
} from './codec.js'
import { MeshMessageTooLargeError, MeshProtocolError } from './errors.js'
import { FrameReader, coalesce, frame, framePrefix, type StreamChunk } from './framing.js'
import type { MeshMetrics } from './metrics.js'

/** The part of a libp2p stream the server uses. */
export interface ServedStream {
  source: AsyncIterable<StreamChunk>
  sink(source: AsyncIterable<Uint8Array>): Promise<void>
  close(): Promise<void>
  abort(err: Error): void
}

export interface ShardServerContext {
  store: ShardStore
  metrics: MeshMetrics
  logger: Logger
  maxMessageBytes: number
  /** The remote peer, for logs. */
  peerId: string
}

/** Shards read from the store at once while answering a get: bounds the memory of one request. */
const GET_READ_BATCH_SHARDS = 16

/** Serves one request on `stream`; resolves when the response is written and the stream closed. */
export async function serveShardStream(stream: ServedStream, ctx: ShardServerContext): Promise<void> {
  const protocol = 'shards'
  const reader = new FrameReader(stream.source, ctx.maxMessageBytes, (n) => ctx.metrics.receivedBytes.inc({ protocol }, n))
  const state: { method: ShardOp | 'unknown'; outcome: string } = { method: 'unknown', outcome: 'ok' }
  const responses = respond(reader, ctx, state)
  try {
    await stream.sink(coalesce(responses, (n) => ctx.metrics.sentBytes.inc({ protocol }, n)))
    await stream.close()
  } catch (err) {
    // The peer went away or reset the stream; nothing more can be said to it.
    state.outcome = state.outcome === 'ok' ? 'unavailable' : state.outcome
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
  ctx.metrics.servedRequests.inc({ method: state.method, outcome: state.outcome })
}

async function* respond(
  reader: FrameReader,
  ctx: ShardServerContext,
  state: { method: ShardOp | 'unknown'; outcome: string },
): AsyncGenerator<Uint8Array> {
  try {
    const first = await reader.next()
    if (first === undefined) throw new MeshProtocolError('stream ended before the request header')
    const header = decodeHeader(first)
    state.method = header.op
    if (header.op === 'put') {
      const shards = await readShards(reader, header.count, ctx.maxMessageBytes)
      await ctx.store.putShards(shards)
      yield* frame(encodeStatus(STATUS_OK))
      return
    }
    const body = await reader.next()
    if (body === undefined) throw new MeshProtocolError('stream ended before the address list')
    const addresses = decodeAddresses(body, header.count)
    await reader.expectEnd()
    if (header.op === 'has') {
      const found = await ctx.store.hasShards(addresses)
      yield* frame(encodeStatus(STATUS_OK, Uint8Array.from(found, (f) => (f ? 1 : 0))))
      return
    }
    yield* getFrames(addresses, ctx)
  } catch (err) {
    state.outcome = errorKind(err)
    logRefusal(ctx, state.method, err)
    yield* frame(encodeError(STATUS_REQUEST_ERROR, err))
  }
}

/** Reads a put's shards, verifying each on arrival; the whole request stays within `maxMessageBytes`. */
async function readShards(reader: FrameReader, count: number, maxMessageBytes: number): Promise<Shard[]> {
  const shards: Shard[] = []
  let totalBytes = 0
  for (let i = 0; i < count; i++) {
    const bytes = await reader.next()
    if (bytes === undefined) throw new MeshProtocolError(`stream ended after ${i} of ${count} shards`)
    totalBytes += bytes.length
    if (totalBytes > maxMessageBytes) {
      throw new MeshMessageTooLargeError(`put request exceeds ${maxMessageBytes} bytes at shard ${i}; split the batch`)
    }
    // Parses and checks both CRCs: a shard damaged in flight never reaches the store.
    shards.push(decodeShard(bytes))
  }
  await reader.expectEnd()
  return shards
}

async function* getFrames(addresses: readonly ShardAddress[], ctx: ShardServerContext): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < addresses.length; i += GET_READ_BATCH_SHARDS) {
    const results = await ctx.store.getShards(addresses.slice(i, i + GET_READ_BATCH_SHARDS))
    for (const result of results) {
      if (result.ok) yield* statusFrame(STATUS_OK, result.shard.bytes)
      else yield* frame(encodeError(STATUS_ITEM_ERROR, result.error))
    }
  }
}

/** A frame of a status byte and `payload`, without copying the payload. */
function* statusFrame(status: number, payload: Uint8Array): Generator<Uint8Array> {
  yield framePrefix(1 + payload.length)
  yield Uint8Array.of(status)
  yield payload
}

function logRefusal(ctx: ShardServerContext, method: string, err: unknown): void {
  const kind = errorKind(err)
  const fields = { peer: ctx.peerId, method, err }
  if (kind === 'internal') ctx.logger.error(fields, 'shard request failed')
  else ctx.logger.warn(fields, 'shard request refused')
}
