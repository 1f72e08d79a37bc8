/**
 * The shard format: one erasure-coded piece of a chunk, self-describing and
 * self-checking, so a shard read alone from any disk says what it is and whether
 * it is intact.
 *
 * Layout (big-endian), version 1:
 *
 * | offset  | size | field                                            |
 * | ------- | ---- | ------------------------------------------------ |
 * | 0       | 4    | magic `CRNS`                                     |
 * | 4       | 1    | format version (1)                               |
 * | 5       | 1    | flags (must be 0)                                |
 * | 6       | 1    | k, data shards (1..255)                          |
 * | 7       | 1    | m, parity shards (k + m <= 255)                  |
 * | 8       | 1    | shard index (< k + m)                            |
 * | 9       | 1    | reserved (must be 0)                             |
 * | 10      | 2    | CID length L (1..255)                            |
 * | 12      | L    | chunk CID, binary                                |
 * | 12+L    | 4    | payload length n                                 |
 * | 16+L    | 4    | chunk length: n = ceil(chunk length / k)         |
 * | 20+L    | 4    | CRC32C of the payload                            |
 * | 24+L    | 4    | CRC32C of bytes [0, 24+L): the header itself     |
 * | 28+L    | n    | payload                                          |
 *
 * The header has its own CRC because a flipped bit in k, m or the index would
 * otherwise pass the payload check and mislabel a good payload. The chunk length
 * makes any k shards enough to rebuild the exact chunk (the last data shard is
 * zero-padded) and check it against its CID, with no other metadata: readers of
 * variable-length chunks (manifest pages) and repair need nothing else.
 */
import { crc32c } from '@node-rs/crc32'
import { CID } from 'multiformats/cid'
import { CairnError } from './errors.js'

/** `CRNS` */
export const SHARD_MAGIC = 0x43524e53
export const SHARD_FORMAT_VERSION = 1
/** Bytes of the header that do not depend on the CID length. */
export const SHARD_FIXED_HEADER_BYTES = 28
export const SHARD_CID_MAX_BYTES = 255
/** k + m never exceeds what Reed–Solomon over GF(2^8) can address. */
export const SHARD_TOTAL_MAX = 255

/** A shard's address on a storage node: `(chunk CID, shard index)`. */
export interface ShardAddress {
  /** Binary CID of the chunk the shard belongs to. */
  chunkCid: Uint8Array
  index: number
}

export interface ShardHeader extends ShardAddress {
  k: number
  m: number
  payloadLengthBytes: number
  /** Length of the whole chunk; `payloadLengthBytes === ceil(chunkLengthBytes / k)`. */
  chunkLengthBytes: number
  payloadCrc32c: number
}

/** A decoded shard; `payload` and `bytes` share memory with the decoded buffer. */
export interface Shard {
  header: ShardHeader
  payload: Uint8Array
  /** The whole encoded shard, header and payload: what a store writes to disk. */
  bytes: Uint8Array
}

/** Malformed shard bytes, address or field: the request is wrong. */
export class ShardFormatError extends CairnError {
  override readonly name = 'ShardFormatError'
  readonly kind = 'invalid-argument'
}

/** Stored bytes fail their checksum or do not parse: never hand them out. */
export class ShardCorruptError extends CairnError {
  override readonly name = 'ShardCorruptError'
  readonly kind = 'data-loss'
}

export interface ShardInit {
  chunkCid: Uint8Array
  k: number
  m: number
  index: number
  /** Length of the chunk this shard belongs to; the payload must be ceil(chunkLengthBytes / k) bytes. */
  chunkLengthBytes: number
  payload: Uint8Array
}

/** Builds the encoded form of a shard; computes both CRCs. */
export function encodeShard(init: ShardInit): Shard {
  validateAddress(init)
  validateGeometry(init.k, init.m, init.index)
  validateLengths(init.k, init.payload.length, init.chunkLengthBytes)
  const cidLength = init.chunkCid.length
  const headerBytes = SHARD_FIXED_HEADER_BYTES + cidLength
  const bytes = new Uint8Array(headerBytes + init.payload.length)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  view.setUint32(0, SHARD_MAGIC)
  view.setUint8(4, SHARD_FORMAT_VERSION)
  view.setUint8(6, init.k)
  view.setUint8(7, init.m)
  view.setUint8(8, init.index)
  view.setUint16(10, cidLength)
  bytes.set(init.chunkCid, 12)
  const payloadCrc32c = crc32c(init.payload) >>> 0
  view.setUint32(12 + cidLength, init.payload.length)
  view.setUint32(16 + cidLength, init.chunkLengthBytes)
  view.setUint32(20 + cidLength, payloadCrc32c)
  view.setUint32(24 + cidLength, crc32c(bytes.subarray(0, 24 + cidLength)) >>> 0)
  bytes.set(init.payload, headerBytes)
  const header: ShardHeader = {
    chunkCid: bytes.subarray(12, 12 + cidLength),
    index: init.index,
    k: init.k,
    m: init.m,
    payloadLengthBytes: init.payload.length,
    chunkLengthBytes: init.chunkLengthBytes,
    payloadCrc32c,
  }
  return { header, payload: bytes.subarray(headerBytes), bytes }
}

/**
 * Parses and fully verifies an encoded shard. `bytes` must hold exactly one shard.
 * @throws ShardFormatError when the structure is wrong (magic, version, lengths, geometry, CID).
 * @throws ShardCorruptError when the header or payload CRC does not match.
 */
export function decodeShard(bytes: Uint8Array): Shard {
  const { header, headerBytes } = decodeShardHeader(bytes)
  const expected = headerBytes + header.payloadLengthBytes
  if (bytes.length !== expected) {
    throw new ShardFormatError(`shard is ${bytes.length} bytes but its header says ${expected} (payload ${header.payloadLengthBytes})`)
  }
  const payload = bytes.subarray(headerBytes)
  if (crc32c(payload) >>> 0 !== header.payloadCrc32c) throw new ShardCorruptError('shard payload CRC32C mismatch')
  return { header, payload, bytes }
}

/**
 * Parses and verifies the header at the start of `bytes` (which may hold more).
 * @returns the header and its length, so a reader can find the payload and the next record.
 */
export function decodeShardHeader(bytes: Uint8Array): { header: ShardHeader; headerBytes: number } {
  if (bytes.length < SHARD_FIXED_HEADER_BYTES) throw new ShardFormatError(`shard is ${bytes.length} bytes, shorter than any header`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0) !== SHARD_MAGIC) throw new ShardFormatError('bad shard magic')
  const version = view.getUint8(4)
  if (version !== SHARD_FORMAT_VERSION) throw new ShardFormatError(`unsupported shard format version ${version}`)
  if (view.getUint8(5) !== 0 || view.getUint8(9) !== 0) throw new ShardFormatError('reserved shard header bits are set')
  const cidLength = view.getUint16(10)
  if (cidLength === 0 || cidLength > SHARD_CID_MAX_BYTES) throw new ShardFormatError(`bad CID length ${cidLength}`)
  const headerBytes = SHARD_FIXED_HEADER_BYTES + cidLength
  if (bytes.length < headerBytes) throw new ShardFormatError('shard is truncated inside its header')
  const headerCrc = view.getUint32(24 + cidLength)
  if (crc32c(bytes.subarray(0, 24 + cidLength)) >>> 0 !== headerCrc) throw new ShardCorruptError('shard header CRC32C mismatch')
  const header: ShardHeader = {
    chunkCid: bytes.subarray(12, 12 + cidLength),
    k: view.getUint8(6),
    m: view.getUint8(7),
    index: view.getUint8(8),
    payloadLengthBytes: view.getUint32(12 + cidLength),
    chunkLengthBytes: view.getUint32(16 + cidLength),
    payloadCrc32c: view.getUint32(20 + cidLength),
  }
  validateGeometry(header.k, header.m, header.index)
  validateLengths(header.k, header.payloadLengthBytes, header.chunkLengthBytes)
  validateCid(header.chunkCid)
  return { header, headerBytes }
}

/**
 * Checks a shard address from a request: a parseable binary CID and an index in range.
 * @throws ShardFormatError
 */
export function validateAddress(address: ShardAddress): void {
  validateCid(address.chunkCid)
  if (!Number.isInteger(address.index) || address.index < 0 || address.index >= SHARD_TOTAL_MAX) {
    throw new ShardFormatError(`bad shard index ${address.index}`)
  }
}

function validateCid(cid: Uint8Array): void {
  if (!(cid instanceof Uint8Array) || cid.length === 0 || cid.length > SHARD_CID_MAX_BYTES) {
    throw new ShardFormatError(`bad CID: ${cid?.length ?? 0} bytes`)
  }
  // Opaque to this module, but it must at least be shaped like a CID: rejects garbage before it is stored.
  if (!isCidShaped(cid)) throw new ShardFormatError('bad CID bytes')
}

/**
 * Whether `bytes` is exactly one binary CID: v0 (a 34-byte sha2-256 multihash) or v1
 * (varint version 1, codec, multihash code, digest length, digest). A hand-rolled
 * check because every read validates an address and CID.decode costs ~10 µs.
 */
export function isCidShaped(bytes: Uint8Array): boolean {
  if (bytes.length === 34 && bytes[0] === 0x12 && bytes[1] === 0x20) return true
  let pos = 0
  const varint = (): number => {
    let value = 0
    for (let shift = 0; shift < 63 && pos < bytes.length; shift += 7) {
      const byte = bytes[pos++] as number
      value += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) return value
    }
    return -1
  }
  if (varint() !== 1 || varint() < 0 || varint() < 0) return false
  const digestLength = varint()
  return digestLength >= 0 && pos + digestLength === bytes.length
}

function validateLengths(k: number, payloadLengthBytes: number, chunkLengthBytes: number): void {
  if (!Number.isInteger(chunkLengthBytes) || chunkLengthBytes < 0 || chunkLengthBytes > 0xffffffff) {
    throw new ShardFormatError(`bad chunk length ${chunkLengthBytes}`)
  }
  if (Math.ceil(chunkLengthBytes / k) !== payloadLengthBytes) {
    throw new ShardFormatError(`payload of ${payloadLengthBytes} bytes cannot be 1/${k} of a ${chunkLengthBytes}-byte chunk`)
  }
}

function validateGeometry(k: number, m: number, index: number): void {
  const ok = Number.isInteger(k) && Number.isInteger(m) && Number.isInteger(index) && k >= 1 && m >= 0 && k + m <= SHARD_TOTAL_MAX
  if (!ok) throw new ShardFormatError(`bad erasure geometry k=${k} m=${m}`)
  if (index < 0 || index >= k + m) throw new ShardFormatError(`shard index ${index} out of range for k=${k} m=${m}`)
}

/** A stable string key for maps: hex CID plus index. */
export function shardKey(address: ShardAddress): string {
  return `${Buffer.from(address.chunkCid.buffer, address.chunkCid.byteOffset, address.chunkCid.byteLength).toString('hex')}/${address.index}`
}

/** Human-readable address for logs and error messages. */
export function formatAddress(address: ShardAddress): string {
  try {
    return `${CID.decode(address.chunkCid).toString()}#${address.index}`
  } catch {
    return shardKey(address)
  }
}
