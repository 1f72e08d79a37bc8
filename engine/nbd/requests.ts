/**
 * Transmission requests: parsing the 28-byte header and validating a request
 * against the negotiated export before anything acts on it. Validation is a pure
 * function so that its table of cases is tested without a socket.
 */
import type { BlockSizeConstraints } from './backend.js'
import { NbdProtocolError } from './errors.js'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_REQUEST_MAGIC,
  REQUEST_HEADER_BYTES,
  type NbdErrno,
} from './protocol.js'

export interface NbdRequest {
  flags: number
  type: number
  /** Opaque 8 bytes, echoed in every reply. */
  handle: Buffer
  /** Exact below 2^53; anything larger is past the end of any export and rejected as such. */
  offsetBytes: number
  lengthBytes: number
}

/** What validation needs to know about the negotiated export. */
export interface RequestContext {
  sizeBytes: number
  transmissionFlags: number
  blockSize: BlockSizeConstraints
  /** base:allocation was negotiated for this export. */
  baseAllocation: boolean
}

export interface Rejection {
  errno: NbdErrno
  reason: string
}

/** @throws NbdProtocolError on a bad magic: the stream cannot be resynchronized. */
export function parseRequestHeader(header: Buffer): NbdRequest {
  if (header.length !== REQUEST_HEADER_BYTES) throw new NbdProtocolError('truncated_request', 'request header is truncated')
  const magic = header.readUInt32BE(0)
  if (magic !== NBD_REQUEST_MAGIC) {
    throw new NbdProtocolError('bad_request_magic', `request magic 0x${magic.toString(16)} is not 0x25609513`)
  }
  return {
    flags: header.readUInt16BE(4),
    type: header.readUInt16BE(6),
    handle: Buffer.from(header.subarray(8, 16)),
    offsetBytes: Number(header.readBigUInt64BE(16)),
    lengthBytes: header.readUInt32BE(24),
  }
}

/** Command flags each command accepts, given the transmission flags the server sent. */
function allowedFlags(type: number, transmissionFlags: number): number {
  const fua = transmissionFlags & NBD_FLAG_SEND_FUA ? NBD_CMD_FLAG_FUA : 0
  switch (type) {
    case NBD_CMD_READ:
      return fua | (transmissionFlags & NBD_FLAG_SEND_DF ? NBD_CMD_FLAG_DF : 0)
    case NBD_CMD_WRITE_ZEROES:
      return fua | NBD_CMD_FLAG_NO_HOLE | (transmissionFlags & NBD_FLAG_SEND_FAST_ZERO ? NBD_CMD_FLAG_FAST_ZERO : 0)
    case NBD_CMD_BLOCK_STATUS:
      return fua | NBD_CMD_FLAG_REQ_ONE
    default:
      return fua
  }
}

const KNOWN_COMMANDS = new Set([
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_TRIM,
  NBD_CMD_CACHE,
  NBD_CMD_WRITE_ZEROES,
  NBD_CMD_BLOCK_STATUS,
])
const WRITE_COMMANDS = new Set([NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES])

/** Whether a command changes the export. */
export function isWriteCommand(type: number): boolean {
  return WRITE_COMMANDS.has(type)
}

/**
 * Checks one request in the order the spec's error rules suggest: the command, its
 * flags, permission, negotiation, then range. Returns why it is refused, or undefined.
 */
export function validateRequest(req: NbdRequest, ctx: RequestContext): Rejection | undefined {
  const reject = (errno: NbdErrno, reason: string): Rejection => ({ errno, reason })
  if (!KNOWN_COMMANDS.has(req.type)) return reject(NBD_EINVAL, `unknown command ${req.type}`)
  const badFlags = req.flags & ~allowedFlags(req.type, ctx.transmissionFlags)
  if (badFlags !== 0) return reject(NBD_EINVAL, `command flags 0x${badFlags.toString(16)} are not valid for this command`)
  const tflags = ctx.transmissionFlags
  if (isWriteCommand(req.type) && tflags & NBD_FLAG_READ_ONLY) return reject(NBD_EPERM, 'export is read-only')
  if (req.type === NBD_CMD_TRIM && !(tflags & NBD_FLAG_SEND_TRIM)) return reject(NBD_EINVAL, 'trim was not offered')
  if (req.type === NBD_CMD_WRITE_ZEROES && !(tflags & NBD_FLAG_SEND_WRITE_ZEROES)) {
    return reject(NBD_EINVAL, 'write zeroes was not offered')
  }
  if (req.type === NBD_CMD_BLOCK_STATUS && !ctx.baseAllocation) {
    return reject(NBD_EINVAL, 'block status without a negotiated metadata context')
  }
  if (req.type === NBD_CMD_FLUSH || req.type === NBD_CMD_DISC) {
    return req.offsetBytes === 0 && req.lengthBytes === 0 ? undefined : reject(NBD_EINVAL, 'offset and length must be zero')
  }
  return validateRange(req, ctx)
}

function validateRange(req: NbdRequest, ctx: RequestContext): Rejection | undefined {
  const reject = (errno: NbdErrno, reason: string): Rejection => ({ errno, reason })
  const { offsetBytes, lengthBytes } = req
  if (lengthBytes === 0) return reject(NBD_EINVAL, 'length is zero')
  if (offsetBytes + lengthBytes > ctx.sizeBytes) {
    // The spec asks for ENOSPC on writes past the end and EINVAL on everything else.
    const errno = req.type === NBD_CMD_WRITE || req.type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL
    return reject(errno, `range ${offsetBytes}+${lengthBytes} ends past the export size ${ctx.sizeBytes}`)
  }
  const min = ctx.blockSize.minimumBytes
  if (offsetBytes % min !== 0 || lengthBytes % min !== 0) {
    return reject(NBD_EINVAL, `range ${offsetBytes}+${lengthBytes} is not aligned to the minimum block size ${min}`)
  }
  const capped =
    req.type === NBD_CMD_READ ||
    req.type === NBD_CMD_WRITE ||
    req.type === NBD_CMD_CACHE ||
    (req.type === NBD_CMD_WRITE_ZEROES && (req.flags & NBD_CMD_FLAG_FAST_ZERO) === 0)
  if (capped && lengthBytes > ctx.blockSize.maximumBytes) {
    return reject(NBD_EINVAL, `length ${lengthBytes} exceeds the maximum block size ${ctx.blockSize.maximumBytes}`)
  }
  return undefined
}
