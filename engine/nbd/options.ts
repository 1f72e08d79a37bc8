/**
 * Phase 2: option haggling. Reads options until the client picks an export
 * (NBD_OPT_EXPORT_NAME or a successful NBD_OPT_GO) or aborts. Every option other
 * than EXPORT_NAME gets a reply; malformed ones get NBD_REP_ERR_INVALID, unknown ones
 * NBD_REP_ERR_UNSUP, and the connection stays usable.
 */
import type { Logger } from '../../core/logger.js'
import { validateBlockSize, type BlockSizeConstraints, type ExportResolver, type NbdBackend } from './backend.js'
import { NbdProtocolError, describeError } from './errors.js'
import type { ClientFlags } from './handshake.js'
import {
  BASE_ALLOCATION,
  MAX_STRING_BYTES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_OPTS_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  optionName,
} from './protocol.js'
import { encodeString, optionReply, type Wire } from './replies.js'

/** The id this server gives base:allocation; opaque to clients. */
export const BASE_ALLOCATION_CONTEXT_ID = 1

/** What option haggling settled, handed to the transmission phase. */
export interface NegotiatedExport {
  name: string
  backend: NbdBackend
  sizeBytes: number
  transmissionFlags: number
  structuredReplies: boolean
  /** base:allocation was selected for this export: BLOCK_STATUS is allowed. */
  baseAllocation: boolean
  /** The constraints advertised and enforced: the backend's, capped by the server's payload limit. */
  blockSize: BlockSizeConstraints
}

export interface OptionLimits {
  /** Largest option payload read; larger gets NBD_REP_ERR_TOO_BIG and a disconnect. */
  maxOptionBytes: number
  /** Options one connection may send before the server calls it a denial of service. */
  maxOptions: number
  /** Largest READ/WRITE payload the server handles, whatever a backend declares. */
  maxPayloadBytes: number
}

export interface OptionContext {
  exports: ExportResolver
  limits: OptionLimits
  logger: Logger
  client: ClientFlags
  /** True once the server is stopping: options are then refused with NBD_REP_ERR_SHUTDOWN. */
  isStopping(): boolean
}

/** A malformed option: answered with NBD_REP_ERR_INVALID, the connection stays usable. */
class BadOption extends Error {}

/** Per-connection negotiation state. */
interface HaggleState {
  structuredReplies: boolean
  /** Export name base:allocation was last selected for, if any. */
  metaContextExport: string | undefined
}

/** Transmission flags for an export; they depend on what the client negotiated. */
export function transmissionFlags(backend: NbdBackend, structuredReplies: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE
  if (backend.isReadOnly) flags |= NBD_FLAG_READ_ONLY
  else flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO
  if (!backend.isReadOnly && backend.canTrim) flags |= NBD_FLAG_SEND_TRIM
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF
  if (backend.canMultiConn) flags |= NBD_FLAG_CAN_MULTI_CONN
  return flags
}

/** Caps the backend's maximum by the server's payload limit, keeping it a multiple of the minimum. */
export function effectiveBlockSize(c: BlockSizeConstraints, maxPayloadBytes: number): BlockSizeConstraints {
  if (c.maximumBytes <= maxPayloadBytes) return c
  return { ...c, maximumBytes: Math.max(c.minimumBytes, maxPayloadBytes - (maxPayloadBytes % c.minimumBytes)) }
}

/**
 * Runs option haggling to its end.
 * @returns the chosen export, or undefined when the client sent NBD_OPT_ABORT.
 * @throws NbdProtocolError when the stream is unusable or the client must be dropped.
 */
export async function haggle(wire: Wire, ctx: OptionContext): Promise<NegotiatedExport | undefined> {
  const state: HaggleState = { structuredReplies: false, metaContextExport: undefined }
  for (let count = 1; ; count++) {
    const header = await wire.reader.read(16)
    if (header.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) {
      throw new NbdProtocolError('bad_option_magic', 'option does not start with IHAVEOPT')
    }
    const option = header.readUInt32BE(8)
    const lengthBytes = header.readUInt32BE(12)
    if (lengthBytes > ctx.limits.maxOptionBytes) {
      // The payload is not worth reading, so the stream cannot be resynchronized.
      wire.send(optionReply(option, NBD_REP_ERR_TOO_BIG, encodeString(`option length ${lengthBytes} exceeds ${ctx.limits.maxOptionBytes}`)))
      throw new NbdProtocolError('option_too_large', `${optionName(option)} option of ${lengthBytes} bytes exceeds ${ctx.limits.maxOptionBytes}`)
    }
    const data = await wire.reader.read(lengthBytes)
    if (count > ctx.limits.maxOptions) {
      throw new NbdProtocolError('too_many_options', `client sent more than ${ctx.limits.maxOptions} options`)
    }
    if (ctx.isStopping() && option !== NBD_OPT_ABORT) {
      wire.send(optionReply(option, NBD_REP_ERR_SHUTDOWN, encodeString('server is shutting down')))
      continue
    }
    try {
      const done = await handleOption(wire, ctx, state, option, data)
      if (done !== 'continue') return done
    } catch (err) {
      if (!(err instanceof BadOption)) throw err
      ctx.logger.warn({ option: optionName(option), reason: err.message }, 'nbd option rejected')
      wire.send(optionReply(option, NBD_REP_ERR_INVALID, encodeString(err.message)))
    }
  }
}

async function handleOption(
  wire: Wire,
  ctx: OptionContext,
  state: HaggleState,
  option: number,
  data: Buffer,
): Promise<NegotiatedExport | undefined | 'continue'> {
  switch (option) {
    case NBD_OPT_EXPORT_NAME:
      return exportName(wire, ctx, state, data)
    case NBD_OPT_ABORT:
      // Data is ignored, as the spec asks; the reply may race the client's close.
      wire.send(optionReply(option, NBD_REP_ACK))
      return undefined
    case NBD_OPT_LIST:
      if (data.length !== 0) throw new BadOption('NBD_OPT_LIST takes no data')
      for (const name of await ctx.exports.list()) {
        const encoded = encodeString(name)
        const payload = Buffer.alloc(4 + encoded.length)
        payload.writeUInt32BE(encoded.length, 0)
        payload.set(encoded, 4)
        wire.send(optionReply(option, NBD_REP_SERVER, payload))
      }
      wire.send(optionReply(option, NBD_REP_ACK))
      return 'continue'
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      return infoOrGo(wire, ctx, state, option, data)
    case NBD_OPT_STRUCTURED_REPLY:
      if (data.length !== 0) throw new BadOption('NBD_OPT_STRUCTURED_REPLY takes no data')
      state.structuredReplies = true
      wire.send(optionReply(option, NBD_REP_ACK))
      return 'continue'
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      await metaContext(wire, ctx, state, option, data)
      return 'continue'
    default:
      // STARTTLS lands here too: this server runs in NOTLS mode.
      ctx.logger.info({ option: optionName(option) }, 'nbd option not supported')
      wire.send(optionReply(option, NBD_REP_ERR_UNSUP, encodeString(`option ${option} is not supported`)))
      return 'continue'
  }
}

/** NBD_OPT_EXPORT_NAME cannot return an error: an unknown export ends the session. */
async function exportName(wire: Wire, ctx: OptionContext, state: HaggleState, data: Buffer): Promise<NegotiatedExport> {
  const name = decodeName(data, () => new NbdProtocolError('bad_export_name', 'export name is not a valid NBD string'))
  const backend = await resolveExport(ctx, name)
  if (backend === undefined) throw new NbdProtocolError('unknown_export', `NBD_OPT_EXPORT_NAME for unknown export ${JSON.stringify(name)}`)
  const negotiated = negotiatedExport(name, backend, state, ctx.limits)
  const reply = Buffer.alloc(ctx.client.noZeroes ? 10 : 134)
  reply.writeBigUInt64BE(BigInt(negotiated.sizeBytes), 0)
  reply.writeUInt16BE(negotiated.transmissionFlags, 8)
  wire.send([reply])
  return negotiated
}

function negotiatedExport(name: string, backend: NbdBackend, state: HaggleState, limits: OptionLimits): NegotiatedExport {
  return {
    blockSize: effectiveBlockSize(backend.blockSize, limits.maxPayloadBytes),
    name,
    backend,
    sizeBytes: backend.sizeBytes,
    transmissionFlags: transmissionFlags(backend, state.structuredReplies),
    structuredReplies: state.structuredReplies,
    baseAllocation: state.structuredReplies && state.metaContextExport === name,
  }
}

/** Resolves a name; a resolver failure or a backend with impossible constraints hides the export. */
async function resolveExport(ctx: OptionContext, name: string): Promise<NbdBackend | undefined> {
  try {
    const backend = await ctx.exports.resolve(name)
    if (backend !== undefined) validateBlockSize(backend.blockSize, backend.sizeBytes)
    return backend
  } catch (err) {
    ctx.logger.error({ export: name, err: describeError(err) }, 'nbd export unavailable')
    return undefined
  }
}

async function infoOrGo(
  wire: Wire,
  ctx: OptionContext,
  state: HaggleState,
  option: number,
  data: Buffer,
): Promise<NegotiatedExport | 'continue'> {
  const cursor = new Cursor(data)
  const name = cursor.string()
  const count = cursor.u16()
  const requests = new Set<number>()
  for (let i = 0; i < count; i++) requests.add(cursor.u16())
  cursor.end()
  const backend = await resolveExport(ctx, name)
  if (backend === undefined) {
    ctx.logger.warn({ option: optionName(option), export: name }, 'nbd option for unknown export')
    wire.send(optionReply(option, NBD_REP_ERR_UNKNOWN, encodeString(`no export named ${JSON.stringify(name)}`)))
    return 'continue'
  }
  const negotiated = negotiatedExport(name, backend, state, ctx.limits)
  const exportInfo = Buffer.alloc(12)
  exportInfo.writeUInt16BE(NBD_INFO_EXPORT, 0)
  exportInfo.writeBigUInt64BE(BigInt(negotiated.sizeBytes), 2)
  exportInfo.writeUInt16BE(negotiated.transmissionFlags, 10)
  wire.send(optionReply(option, NBD_REP_INFO, exportInfo))
  if (requests.has(NBD_INFO_NAME)) wire.send(optionReply(option, NBD_REP_INFO, infoString(NBD_INFO_NAME, name)))
  if (requests.has(NBD_INFO_DESCRIPTION) && backend.description !== undefined) {
    wire.send(optionReply(option, NBD_REP_INFO, infoString(NBD_INFO_DESCRIPTION, backend.description)))
  }
  // Sent unasked too: the server enforces these limits, and clients ignore what they did not request.
  const blockSize = Buffer.alloc(14)
  blockSize.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0)
  blockSize.writeUInt32BE(negotiated.blockSize.minimumBytes, 2)
  blockSize.writeUInt32BE(negotiated.blockSize.preferredBytes, 6)
  blockSize.writeUInt32BE(negotiated.blockSize.maximumBytes, 10)
  wire.send(optionReply(option, NBD_REP_INFO, blockSize))
  wire.send(optionReply(option, NBD_REP_ACK))
  return option === NBD_OPT_GO ? negotiated : 'continue'
}

function infoString(type: number, text: string): Buffer {
  const encoded = encodeString(text)
  const out = Buffer.alloc(2 + encoded.length)
  out.writeUInt16BE(type, 0)
  out.set(encoded, 2)
  return out
}

/** LIST_META_CONTEXT and SET_META_CONTEXT share one request format. */
async function metaContext(wire: Wire, ctx: OptionContext, state: HaggleState, option: number, data: Buffer): Promise<void> {
  const isSet = option === NBD_OPT_SET_META_CONTEXT
  // SET replaces the selection even when it fails, so forget the old one first.
  if (isSet) state.metaContextExport = undefined
  if (!state.structuredReplies) throw new BadOption(`${optionName(option)} requires NBD_OPT_STRUCTURED_REPLY first`)
  const cursor = new Cursor(data)
  const name = cursor.string()
  const count = cursor.u32()
  const queries: string[] = []
  for (let i = 0; i < count; i++) queries.push(cursor.string())
  cursor.end()
  for (const q of queries) if (!q.includes(':')) throw new BadOption(`meta context query ${JSON.stringify(q)} has no namespace`)
  if ((await resolveExport(ctx, name)) === undefined) {
    wire.send(optionReply(option, NBD_REP_ERR_UNKNOWN, encodeString(`no export named ${JSON.stringify(name)}`)))
    return
  }
  // An empty query list lists everything but selects nothing; `base:` is a wildcard only when listing.
  const matches = isSet
    ? queries.includes(BASE_ALLOCATION)
    : queries.length === 0 || queries.some((q) => q === BASE_ALLOCATION || q === 'base:')
  if (matches) {
    const encoded = encodeString(BASE_ALLOCATION)
    const payload = Buffer.alloc(4 + encoded.length)
    payload.writeUInt32BE(isSet ? BASE_ALLOCATION_CONTEXT_ID : 0, 0)
    payload.set(encoded, 4)
    wire.send(optionReply(option, NBD_REP_META_CONTEXT, payload))
    if (isSet) state.metaContextExport = name
  }
  wire.send(optionReply(option, NBD_REP_ACK))
}

/** A bounds-checked reader over one option's data; any overrun is a BadOption. */
class Cursor {
  private at = 0
  constructor(private readonly data: Buffer) {}

  u16(): number {
    this.need(2)
    const v = this.data.readUInt16BE(this.at)
    this.at += 2
    return v
  }

  u32(): number {
    this.need(4)
    const v = this.data.readUInt32BE(this.at)
    this.at += 4
    return v
  }

  /** A 32-bit length followed by that many bytes of NBD string. */
  string(): string {
    const length = this.u32()
    this.need(length)
    const bytes = this.data.subarray(this.at, this.at + length)
    this.at += length
    return decodeName(bytes, () => new BadOption('string is not valid UTF-8 without NUL, or longer than 4096 bytes'))
  }

  end(): void {
    if (this.at !== this.data.length) throw new BadOption(`option has ${this.data.length - this.at} trailing bytes`)
  }

  private need(n: number): void {
    if (this.at + n > this.data.length) throw new BadOption(`option data ends ${this.at + n - this.data.length} bytes early`)
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Decodes an NBD string: valid UTF-8, no NUL, at most 4096 bytes. */
function decodeName(bytes: Uint8Array, invalid: () => Error): string {
  if (bytes.length > MAX_STRING_BYTES || bytes.includes(0)) throw invalid()
  try {
    return utf8.decode(bytes)
  } catch {
    throw invalid()
  }
}
