/**
 * Reply framing: option replies (handshake) and simple or structured replies
 * (transmission). Every encoder returns the whole message as a list of buffers;
 * `Wire.send` writes such a list in one synchronous step, which is what keeps two
 * replies' bytes from ever interleaving on a connection.
 */
import type { ByteReader } from './byte-reader.js'
import {
  MAX_STRING_BYTES,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REP_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  type NbdErrno,
} from './protocol.js'

/** One connection's byte stream, as the protocol phases see it. */
export interface Wire {
  readonly reader: ByteReader
  /** Writes one complete message; never interleaved with another. Dropped once the socket is gone. */
  send(parts: readonly Uint8Array[]): void
  /** Resolves once the socket's write buffer is below its high-water mark (or the socket is gone). */
  whenDrained(): Promise<void>
}

/** An option reply (fixed newstyle): magic, option, type, length, data. */
export function optionReply(option: number, type: number, data?: Uint8Array): Uint8Array[] {
  const header = Buffer.alloc(20)
  header.writeBigUInt64BE(NBD_REP_MAGIC, 0)
  header.writeUInt32BE(option, 8)
  header.writeUInt32BE(type >>> 0, 12)
  header.writeUInt32BE(data?.length ?? 0, 16)
  return data === undefined || data.length === 0 ? [header] : [header, data]
}

/** A simple reply; `data` only for a successful READ. */
export function simpleReply(handle: Uint8Array, errno: number, data?: Uint8Array): Uint8Array[] {
  const header = Buffer.alloc(16)
  header.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0)
  header.writeUInt32BE(errno, 4)
  header.set(handle, 8)
  return data === undefined ? [header] : [header, data]
}

function chunkHeader(handle: Uint8Array, flags: number, type: number, lengthBytes: number): Buffer {
  const header = Buffer.alloc(20)
  header.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0)
  header.writeUInt16BE(flags, 4)
  header.writeUInt16BE(type, 6)
  header.set(handle, 8)
  header.writeUInt32BE(lengthBytes, 16)
  return header
}

const doneFlag = (done: boolean): number => (done ? NBD_REPLY_FLAG_DONE : 0)

/** NBD_REPLY_TYPE_OFFSET_DATA: `data` read at absolute `offsetBytes`. */
export function offsetDataChunk(handle: Uint8Array, offsetBytes: number, data: Uint8Array, done: boolean): Uint8Array[] {
  const offset = Buffer.alloc(8)
  offset.writeBigUInt64BE(BigInt(offsetBytes))
  return [chunkHeader(handle, doneFlag(done), NBD_REPLY_TYPE_OFFSET_DATA, 8 + data.length), offset, data]
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: `lengthBytes` of zeroes at `offsetBytes`. */
export function offsetHoleChunk(handle: Uint8Array, offsetBytes: number, lengthBytes: number, done: boolean): Uint8Array[] {
  const payload = Buffer.alloc(12)
  payload.writeBigUInt64BE(BigInt(offsetBytes), 0)
  payload.writeUInt32BE(lengthBytes, 8)
  return [chunkHeader(handle, doneFlag(done), NBD_REPLY_TYPE_OFFSET_HOLE, 12), payload]
}

/** NBD_REPLY_TYPE_BLOCK_STATUS for one context: descriptors of (length, flags). */
export function blockStatusChunk(
  handle: Uint8Array,
  contextId: number,
  descriptors: ReadonlyArray<{ lengthBytes: number; flags: number }>,
  done: boolean,
): Uint8Array[] {
  const payload = Buffer.alloc(4 + 8 * descriptors.length)
  payload.writeUInt32BE(contextId, 0)
  descriptors.forEach((d, i) => {
    payload.writeUInt32BE(d.lengthBytes, 4 + 8 * i)
    payload.writeUInt32BE(d.flags, 8 + 8 * i)
  })
  return [chunkHeader(handle, doneFlag(done), NBD_REPLY_TYPE_BLOCK_STATUS, payload.length), payload]
}

/** NBD_REPLY_TYPE_ERROR, always final: errno plus a message for the human at the client. */
export function errorChunk(handle: Uint8Array, errno: NbdErrno, message: string): Uint8Array[] {
  const text = encodeString(message)
  const payload = Buffer.alloc(6 + text.length)
  payload.writeUInt32BE(errno, 0)
  payload.writeUInt16BE(text.length, 4)
  payload.set(text, 6)
  return [chunkHeader(handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, payload.length), payload]
}

/** UTF-8 within the spec's string limit, cut on a character boundary. */
export function encodeString(text: string): Buffer {
  let encoded = Buffer.from(text, 'utf8')
  let chars = text.length
  while (encoded.length > MAX_STRING_BYTES) {
    chars = Math.floor(chars * 0.9)
    encoded = Buffer.from(text.slice(0, chars), 'utf8')
  }
  return encoded
}
