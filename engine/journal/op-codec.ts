/**
 * JournalOp ↔ (op code, payload bytes) for the journal replicas, which store
 * records opaquely. Offsets and lengths are big-endian u64 (asserted < 2^53).
 */
import type { JournalOp } from '../contracts.js'
import { InvalidArgumentError } from '../../core/errors.js'
import { JournalOpFormatError } from './errors.js'

export const OP_WRITE = 1
export const OP_TRIM = 2
export const OP_ZERO = 3
export const OP_RESIZE = 4

function u64(value: number, field: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`journal op ${field} ${value} is not a non-negative safe integer`)
  return BigInt(value)
}

function readU64(b: Buffer, at: number): number {
  const v = b.readBigUInt64BE(at)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new JournalOpFormatError(`journal op field ${v} exceeds 2^53`)
  return Number(v)
}

export function encodeOp(op: JournalOp): { op: number; payload: Uint8Array } {
  switch (op.kind) {
    case 'write': {
      const payload = Buffer.allocUnsafe(8 + op.data.length)
      payload.writeBigUInt64BE(u64(op.offsetBytes, 'offsetBytes'), 0)
      payload.set(op.data, 8)
      return { op: OP_WRITE, payload }
    }
    case 'trim':
    case 'zero': {
      const payload = Buffer.allocUnsafe(16)
      payload.writeBigUInt64BE(u64(op.offsetBytes, 'offsetBytes'), 0)
      payload.writeBigUInt64BE(u64(op.lengthBytes, 'lengthBytes'), 8)
      return { op: op.kind === 'trim' ? OP_TRIM : OP_ZERO, payload }
    }
    case 'resize': {
      const payload = Buffer.allocUnsafe(8)
      payload.writeBigUInt64BE(u64(op.sizeBytes, 'sizeBytes'), 0)
      return { op: OP_RESIZE, payload }
    }
    default:
      throw new InvalidArgumentError(`unknown journal op ${JSON.stringify((op as { kind?: unknown }).kind)}`)
  }
}

export function decodeOp(code: number, payload: Uint8Array): JournalOp {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  const need = (n: number, exact: boolean): void => {
    if (exact ? b.length !== n : b.length < n) throw new JournalOpFormatError(`journal op ${code} has a ${b.length}-byte payload`)
  }
  switch (code) {
    case OP_WRITE:
      need(8, false)
      return { kind: 'write', offsetBytes: readU64(b, 0), data: new Uint8Array(b.buffer, b.byteOffset + 8, b.length - 8) }
    case OP_TRIM:
    case OP_ZERO:
      need(16, true)
      return { kind: code === OP_TRIM ? 'trim' : 'zero', offsetBytes: readU64(b, 0), lengthBytes: readU64(b, 8) }
    case OP_RESIZE:
      need(8, true)
      return { kind: 'resize', sizeBytes: readU64(b, 0) }
    default:
      throw new JournalOpFormatError(`unknown journal op code ${code}`)
  }
}
