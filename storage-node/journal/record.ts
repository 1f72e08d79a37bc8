/**
 * The on-disk journal record: a 32-byte header then the payload, back to back in
 * segment files. The CRC32C covers the header (up to the CRC) and the payload, so
 * a torn or bit-flipped record is detected wherever the damage lands.
 *
 * Header (big-endian): magic u32 | payloadBytes u32 | seq u64 | epoch u64 | op u32 | crc32c u32
 */
import { crc32c } from '@node-rs/crc32'

/** 'CJRN' */
export const RECORD_MAGIC = 0x434a524e
export const RECORD_HEADER_BYTES = 32

/** One journal record as the node stores it; the op and payload are opaque here. */
export interface StoredRecord {
  seq: number
  epoch: number
  op: number
  payload: Uint8Array
}

export interface RecordHeader {
  seq: number
  epoch: number
  op: number
  payloadBytes: number
  crc: number
}

function recordCrc(header: Uint8Array, payload: Uint8Array): number {
  return crc32c(payload, crc32c(header.subarray(0, RECORD_HEADER_BYTES - 4))) >>> 0
}

/** The record's bytes as written to a segment. */
export function encodeRecord(record: StoredRecord): Buffer {
  const bytes = Buffer.allocUnsafe(RECORD_HEADER_BYTES + record.payload.length)
  bytes.writeUInt32BE(RECORD_MAGIC, 0)
  bytes.writeUInt32BE(record.payload.length, 4)
  bytes.writeBigUInt64BE(BigInt(record.seq), 8)
  bytes.writeBigUInt64BE(BigInt(record.epoch), 16)
  bytes.writeUInt32BE(record.op, 24)
  bytes.set(record.payload, RECORD_HEADER_BYTES)
  bytes.writeUInt32BE(recordCrc(bytes, record.payload), 28)
  return bytes
}

/** Parses a header; undefined when the magic is wrong or a field is out of range (a torn or foreign tail). */
export function decodeRecordHeader(bytes: Uint8Array): RecordHeader | undefined {
  if (bytes.length < RECORD_HEADER_BYTES) return undefined
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, RECORD_HEADER_BYTES)
  if (b.readUInt32BE(0) !== RECORD_MAGIC) return undefined
  const seq = b.readBigUInt64BE(8)
  const epoch = b.readBigUInt64BE(16)
  if (seq > BigInt(Number.MAX_SAFE_INTEGER) || epoch > BigInt(Number.MAX_SAFE_INTEGER)) return undefined
  return { payloadBytes: b.readUInt32BE(4), seq: Number(seq), epoch: Number(epoch), op: b.readUInt32BE(24), crc: b.readUInt32BE(28) }
}

/** Whether `bytes` (header then payload, exactly) is an intact record. */
export function recordIntact(bytes: Uint8Array, header: RecordHeader): boolean {
  if (bytes.length !== RECORD_HEADER_BYTES + header.payloadBytes) return false
  return recordCrc(bytes, bytes.subarray(RECORD_HEADER_BYTES)) === header.crc
}

/** Decodes an intact record read from disk (the caller verified it). */
export function decodeRecord(bytes: Uint8Array, header: RecordHeader): StoredRecord {
  return { seq: header.seq, epoch: header.epoch, op: header.op, payload: bytes.subarray(RECORD_HEADER_BYTES) }
}

/** Same seq, epoch, op and payload bytes: an exact repeat. */
export function sameRecord(a: StoredRecord, b: StoredRecord): boolean {
  return a.seq === b.seq && a.epoch === b.epoch && a.op === b.op && Buffer.from(a.payload).equals(Buffer.from(b.payload))
}
