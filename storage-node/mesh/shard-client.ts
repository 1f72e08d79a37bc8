/**
 * The calling side of `/cairn/shards/1.0.0` (wire format in codec.ts) on an
 * already opened stream: one request, one response. The mesh opens the stream
 * to a verified member, splits large calls and applies the timeout.
 */
import { decodeShard, ShardCorruptError, type Shard, type ShardAddress } from '../../core/shard.js'
import type { GetResult } from '../shard-store.js'
import {
  STATUS_ITEM_ERROR, STATUS_OK, STATUS_REQUEST_ERROR, decodeError, encodeAddresses, encodeHeader, type ShardOp,
} from './codec.js'
import { MeshProtocolError } from './errors.js'
import { FrameReader, coalesce, frame } from './framing.js'
import type { ServedStream } from './shard-server.js'

export interface ShardCallContext {
  maxMessageBytes: number
  onSent: (bytes: number) => void
  onReceived: (bytes: number) => void
}

/** Asks whether the peer holds each shard. */
export async function callHas(stream: ServedStream, addresses: readonly ShardAddress[], ctx: ShardCallContext): Promise<boolean[]> {
  const reader = await send(stream, 'has', addresses.length, frame(encodeAddresses(addresses)), ctx)
  const body = await okFrame(reader)
  if (body.length !== 1 + addresses.length) throw new MeshProtocolError(`has response holds ${body.length - 1} answers for ${addresses.length} addresses`)
  return Array.from(body.subarray(1), (b) => b === 1)
}

/** Fetches shards, each verified again on arrival (parse, both CRCs, the address asked for). */
export async function callGet(stream: ServedStream, addresses: readonly ShardAddress[], ctx: ShardCallContext): Promise<GetResult[]> {
  const reader = await send(stream, 'get', addresses.length, frame(encodeAddresses(addresses)), ctx)
  const results: GetResult[] = []
  for (const address of addresses) {
    const body = await reader.next()
    if (body === undefined) throw new MeshProtocolError(`get response ended after ${results.length} of ${addresses.length} shards`)
    if (body[0] === STATUS_REQUEST_ERROR) throw decodeError(body)
    if (body[0] === STATUS_ITEM_ERROR) results.push({ ok: false, error: decodeError(body) })
    else if (body[0] === STATUS_OK) results.push(verifyArrival(body.subarray(1), address))
    else throw new MeshProtocolError(`unknown response status ${body[0]}`)
  }
  return results
}

/** Stores shards on the peer; resolves once the peer's store put resolved (durable there). */
export async function callPut(stream: ServedStream, shards: readonly Shard[], ctx: ShardCallContext): Promise<void> {
  const frames = shards.flatMap((s) => frame(s.bytes))
  const reader = await send(stream, 'put', shards.length, frames, ctx)
  const body = await okFrame(reader)
  if (body.length !== 1) throw new MeshProtocolError('put acknowledgement carries unexpected bytes')
}

async function send(stream: ServedStream, op: ShardOp, count: number, body: Uint8Array[], ctx: ShardCallContext): Promise<FrameReader> {
  const chunks = [...frame(encodeHeader({ op, count })), ...body]
  await stream.sink(coalesce(chunks, ctx.onSent))
  // One byte for the status in front of a shard of up to maxMessageBytes.
  return new FrameReader(stream.source, ctx.maxMessageBytes + 1, ctx.onReceived)
}

async function okFrame(reader: FrameReader): Promise<Uint8Array> {
  const body = await reader.next()
  if (body === undefined) throw new MeshProtocolError('stream ended before the response')
  if (body[0] === STATUS_REQUEST_ERROR) throw decodeError(body)
  if (body[0] !== STATUS_OK) throw new MeshProtocolError(`unexpected response status ${body[0]}`)
  return body
}

function verifyArrival(bytes: Uint8Array, address: ShardAddress): GetResult {
  let shard: Shard
  try {
    // A view into a larger receive buffer is copied so the shard does not pin that buffer;
    // a frame the reader already assembled into its own buffer (status byte + shard) is not.
    const ownBuffer = bytes.buffer.byteLength - bytes.byteLength <= 1
    shard = decodeShard(ownBuffer ? bytes : bytes.slice())
  } catch (err) {
    return { ok: false, error: new ShardCorruptError('shard failed verification on arrival', { cause: err }) }
  }
  if (shard.header.index !== address.index || !sameBytes(shard.header.chunkCid, address.chunkCid)) {
    return { ok: false, error: new ShardCorruptError(`peer returned shard ${shard.header.index} of another chunk or index`) }
  }
  return { ok: true, shard }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}
