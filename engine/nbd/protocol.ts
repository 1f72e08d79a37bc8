/**
 * NBD wire constants (fixed newstyle), as numbered by the protocol document
 * NetworkBlockDevice/nbd doc/proto.md. Every value here is on the wire; names follow
 * the document so that a reader can grep the spec for them.
 */

/** 'NBDMAGIC', sent first by the server. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n
/** 'IHAVEOPT': the newstyle magic, and the prefix of every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n
/** Prefix of every option reply in fixed newstyle. */
export const NBD_REP_MAGIC = 0x3e889045565a9n
export const NBD_REQUEST_MAGIC = 0x25609513
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef

/** Handshake flags (server, 16 bits). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_NO_ZEROES = 1 << 1

/** Client flags (32 bits). */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_C_NO_ZEROES = 1 << 1

/** Transmission flags (16 bits). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0
export const NBD_FLAG_READ_ONLY = 1 << 1
export const NBD_FLAG_SEND_FLUSH = 1 << 2
export const NBD_FLAG_SEND_FUA = 1 << 3
export const NBD_FLAG_ROTATIONAL = 1 << 4
export const NBD_FLAG_SEND_TRIM = 1 << 5
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
export const NBD_FLAG_SEND_DF = 1 << 7
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8
export const NBD_FLAG_SEND_CACHE = 1 << 10
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11

/** Option types. */
export const NBD_OPT_EXPORT_NAME = 1
export const NBD_OPT_ABORT = 2
export const NBD_OPT_LIST = 3
export const NBD_OPT_STARTTLS = 5
export const NBD_OPT_INFO = 6
export const NBD_OPT_GO = 7
export const NBD_OPT_STRUCTURED_REPLY = 8
export const NBD_OPT_LIST_META_CONTEXT = 9
export const NBD_OPT_SET_META_CONTEXT = 10

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1
export const NBD_REP_SERVER = 2
export const NBD_REP_INFO = 3
export const NBD_REP_META_CONTEXT = 4
const REP_ERR = 0x80000000
export const NBD_REP_ERR_UNSUP = REP_ERR + 1
export const NBD_REP_ERR_POLICY = REP_ERR + 2
export const NBD_REP_ERR_INVALID = REP_ERR + 3
export const NBD_REP_ERR_PLATFORM = REP_ERR + 4
export const NBD_REP_ERR_TLS_REQD = REP_ERR + 5
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7
export const NBD_REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9

/** Information types for NBD_OPT_INFO / NBD_OPT_GO. */
export const NBD_INFO_EXPORT = 0
export const NBD_INFO_NAME = 1
export const NBD_INFO_DESCRIPTION = 2
export const NBD_INFO_BLOCK_SIZE = 3

/** Request types. */
export const NBD_CMD_READ = 0
export const NBD_CMD_WRITE = 1
export const NBD_CMD_DISC = 2
export const NBD_CMD_FLUSH = 3
export const NBD_CMD_TRIM = 4
export const NBD_CMD_CACHE = 5
export const NBD_CMD_WRITE_ZEROES = 6
export const NBD_CMD_BLOCK_STATUS = 7

/** Command flags (16 bits). */
export const NBD_CMD_FLAG_FUA = 1 << 0
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1
export const NBD_CMD_FLAG_DF = 1 << 2
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4

/** Structured reply flags and chunk types. */
export const NBD_REPLY_FLAG_DONE = 1 << 0
export const NBD_REPLY_TYPE_NONE = 0
export const NBD_REPLY_TYPE_OFFSET_DATA = 1
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

/** base:allocation flags. */
export const NBD_STATE_HOLE = 1 << 0
export const NBD_STATE_ZERO = 1 << 1

/** The one metadata context this server implements. */
export const BASE_ALLOCATION = 'base:allocation'

/** Error values; the spec restricts replies to this set. */
export const NBD_EPERM = 1
export const NBD_EIO = 5
export const NBD_ENOMEM = 12
export const NBD_EINVAL = 22
export const NBD_ENOSPC = 28
export const NBD_EOVERFLOW = 75
export const NBD_ENOTSUP = 95
export const NBD_ESHUTDOWN = 108

export type NbdErrno =
  | typeof NBD_EPERM
  | typeof NBD_EIO
  | typeof NBD_ENOMEM
  | typeof NBD_EINVAL
  | typeof NBD_ENOSPC
  | typeof NBD_EOVERFLOW
  | typeof NBD_ENOTSUP
  | typeof NBD_ESHUTDOWN

const ERRNO_NAMES: Record<NbdErrno, string> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
}

/** `EINVAL` for 22: used in logs and metric labels. */
export function errnoName(errno: NbdErrno): string {
  return ERRNO_NAMES[errno]
}

const COMMAND_NAMES: Record<number, string> = {
  [NBD_CMD_READ]: 'read',
  [NBD_CMD_WRITE]: 'write',
  [NBD_CMD_DISC]: 'disc',
  [NBD_CMD_FLUSH]: 'flush',
  [NBD_CMD_TRIM]: 'trim',
  [NBD_CMD_CACHE]: 'cache',
  [NBD_CMD_WRITE_ZEROES]: 'write_zeroes',
  [NBD_CMD_BLOCK_STATUS]: 'block_status',
}

/** A bounded label for metrics: unknown command numbers all become `unknown`. */
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? 'unknown'
}

const OPTION_NAMES: Record<number, string> = {
  [NBD_OPT_EXPORT_NAME]: 'export_name',
  [NBD_OPT_ABORT]: 'abort',
  [NBD_OPT_LIST]: 'list',
  [NBD_OPT_STARTTLS]: 'starttls',
  [NBD_OPT_INFO]: 'info',
  [NBD_OPT_GO]: 'go',
  [NBD_OPT_STRUCTURED_REPLY]: 'structured_reply',
  [NBD_OPT_LIST_META_CONTEXT]: 'list_meta_context',
  [NBD_OPT_SET_META_CONTEXT]: 'set_meta_context',
}

export function optionName(option: number): string {
  return OPTION_NAMES[option] ?? `unknown(${option})`
}

/** Size of a request header on the wire. */
export const REQUEST_HEADER_BYTES = 28
/** The spec's string limit: names, descriptions, error messages. */
export const MAX_STRING_BYTES = 4096
/**
 * Below this, a WRITE payload SHOULD NOT be treated as a denial of service even when
 * it exceeds the advertised maximum block size (spec, "Block size constraints").
 */
export const PORTABLE_PAYLOAD_BYTES = 32 * 1024 * 1024
