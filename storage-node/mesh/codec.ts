/**
 * The wire format of `/cairn/shards/1.0.0`, one request per stream.
 *
 * Request (client → server), then the client closes its write side:
 * - header frame: `u8 version (1)`, `u8 op`, `u32 count`
 * - has, get: one frame of `count` addresses, each `u8 index`, `u8 CID length`, CID
 * - put: `count` frames, one encoded shard each (core/shard.ts format)
 *
 * Response (server → client), each frame starting with a status byte:
 * - `0` ok: has → one frame of `count` bytes (0 or 1); get → one frame per address
 *   holding the shard; put → one frame, sent only after the store's put resolved (fsynced)
 * - `1` item error (get only): that address failed, the others follow
 * - `2` request error: the whole request failed; nothing follows
 *
 * Errors travel as JSON `{ name, kind, message }` and come back as the same typed
 * error class when this node knows it (the store's errors), else as core's RemoteError.
 */
import { CairnError, ResourceExhaustedError, ShuttingDownError, errorKind, type ErrorKind } from '../../core/errors.js'
import { RemoteError } from '../../core/grpc.js'
import { ShardCorruptError, ShardFormatError, validateAddress, type ShardAddress } from '../../core/shard.js'
import { CapacityExceededError } from '../capacity.js'
import { DiskFullError, ShardLimitError, ShardNotFoundError } from '../shard-store.js'
import { MeshMessageTooLargeError, MeshProtocolError, MeshUnavailableError } from './errors.js'

export const SHARD_PROTOCOL = '/cairn/shards/1.0.0'
export const WIRE_VERSION = 1
export const HEADER_BYTES = 6

export const OPS = { has: 1, get: 2, put: 3 } as const
export type ShardOp = keyof typeof OPS

/** Most addresses in one has request; larger calls are split by the client. */
export const HAS_COUNT_MAX = 4096
/** Most shards in one get or put request; larger calls are split by the client. */
export const TRANSFER_COUNT_MAX = 256

export const STATUS_OK = 0
export const STATUS_ITEM_ERROR = 1
export const STATUS_REQUEST_ERROR = 2

export interface RequestHeader {
  op: ShardOp
  count: number
}

export function encodeHeader(header: RequestHeader): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES)
  const view = new DataView(bytes.buffer)
  view.setUint8(0, WIRE_VERSION)
  view.setUint8(1, OPS[header.op])
  view.setUint32(2, header.count)
  return bytes
}

/** @throws MeshProtocolError */
export function decodeHeader(bytes: Uint8Array): RequestHeader {
  if (bytes.length !== HEADER_BYTES) throw new MeshProtocolError(`request header is ${bytes.length} bytes, expected ${HEADER_BYTES}`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const version = view.getUint8(0)
  if (version !== WIRE_VERSION) throw new MeshProtocolError(`unsupported shard protocol version ${version}`)
  const code = view.getUint8(1)
  const op = (Object.keys(OPS) as ShardOp[]).find((o) => OPS[o] === code)
  if (op === undefined) throw new MeshProtocolError(`unknown shard protocol op ${code}`)
  const count = view.getUint32(2)
  const max = op === 'has' ? HAS_COUNT_MAX : TRANSFER_COUNT_MAX
  if (count === 0 || count > max) throw new MeshProtocolError(`a ${op} request carries 1..${max} items, got ${count}`)
  return { op, count }
}

export function encodeAddresses(addresses: readonly ShardAddress[]): Uint8Array {
  let size = 0
  for (const a of addresses) size += 2 + a.chunkCid.length
  const bytes = new Uint8Array(size)
  let pos = 0
  for (const a of addresses) {
    validateAddress(a)
    bytes[pos] = a.index
    bytes[pos + 1] = a.chunkCid.length
    bytes.set(a.chunkCid, pos + 2)
    pos += 2 + a.chunkCid.length
  }
  return bytes
}

/** @throws MeshProtocolError when the frame does not hold exactly `count` valid addresses */
export function decodeAddresses(bytes: Uint8Array, count: number): ShardAddress[] {
  const out: ShardAddress[] = []
  let pos = 0
  while (pos < bytes.length) {
    if (pos + 2 > bytes.length) throw new MeshProtocolError('address list is truncated')
    const index = bytes[pos]!
    const cidLength = bytes[pos + 1]!
    if (pos + 2 + cidLength > bytes.length) throw new MeshProtocolError('address list is truncated inside a CID')
    const address = { chunkCid: bytes.slice(pos + 2, pos + 2 + cidLength), index }
    try {
      validateAddress(address)
    } catch (err) {
      throw new MeshProtocolError(`bad shard address at item ${out.length}`, { cause: err })
    }
    out.push(address)
    pos += 2 + cidLength
  }
  if (out.length !== count) throw new MeshProtocolError(`address list holds ${out.length} addresses, the header says ${count}`)
  return out
}

/** A status byte followed by `payload`. */
export function encodeStatus(status: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(1 + payload.length)
  bytes[0] = status
  bytes.set(payload, 1)
  return bytes
}

/** Longest error message sent; the rest is cut, so an error frame stays small. */
const MESSAGE_CHARS_MAX = 1000

export function encodeError(status: number, err: unknown): Uint8Array {
  const kind = errorKind(err)
  const name = err instanceof CairnError ? err.name : 'InternalError'
  // Internal errors are bugs; their text stays in this node's log, not on the wire.
  const message = err instanceof CairnError && kind !== 'internal' ? err.message.slice(0, MESSAGE_CHARS_MAX) : 'internal error'
  return encodeStatus(status, new TextEncoder().encode(JSON.stringify({ name, kind, message })))
}

type ErrorClass = new (message: string) => CairnError

/** Errors a peer may send that this node rebuilds as their own class (tests and callers match on name). */
const KNOWN_ERRORS: Record<string, ErrorClass> = {
  ShardNotFoundError,
  ShardCorruptError,
  ShardFormatError,
  ShardLimitError,
  DiskFullError,
  CapacityExceededError,
  ResourceExhaustedError,
  ShuttingDownError,
  MeshProtocolError,
  MeshMessageTooLargeError,
  MeshUnavailableError,
}

const KINDS: readonly ErrorKind[] = [
  'invalid-argument', 'not-found', 'already-exists', 'failed-precondition', 'aborted', 'out-of-range',
  'resource-exhausted', 'permission-denied', 'unauthenticated', 'unavailable', 'data-loss', 'internal',
]

/** Rebuilds the typed error carried after a status byte. @throws MeshProtocolError when it does not parse */
export function decodeError(body: Uint8Array): CairnError {
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(1)))
  } catch (err) {
    throw new MeshProtocolError('error frame does not hold JSON', { cause: err })
  }
  const { name, kind, message } = (parsed ?? {}) as Record<string, unknown>
  if (typeof name !== 'string' || typeof message !== 'string' || !KINDS.includes(kind as ErrorKind)) {
    throw new MeshProtocolError('error frame lacks name, kind or message')
  }
  const known = KNOWN_ERRORS[name]
  if (known !== undefined) return new known(`peer: ${message}`)
  return new RemoteError(kind as ErrorKind, name, `peer: ${message}`)
}
