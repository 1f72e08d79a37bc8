/**
 * NBD errors, and the one table that turns any thrown value into an NBD errno.
 *
 * Backends throw ordinary Cairn errors (each with a `kind`); the server never
 * inspects messages or classes beyond the three NBD-specific ones defined here.
 */
import { CairnError, ShuttingDownError, errorKind, type ErrorKind } from '../../core/errors.js'
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  type NbdErrno,
} from './protocol.js'

/**
 * The client broke the protocol in a way that leaves the byte stream unusable
 * (bad magic, truncated message, a payload too large to read). The connection closes.
 */
export class NbdProtocolError extends CairnError {
  override readonly name = 'NbdProtocolError'
  readonly kind = 'invalid-argument'
  /** A short, bounded label for the protocol-errors metric, e.g. `bad_request_magic`. */
  readonly reason: string

  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.reason = reason
  }
}

/** The server rejected one request before acting on it; the connection stays usable. */
export class NbdRequestRejectedError extends CairnError {
  override readonly name = 'NbdRequestRejectedError'
  readonly kind: ErrorKind
  readonly errno: NbdErrno

  constructor(errno: NbdErrno, message: string) {
    super(message)
    this.errno = errno
    this.kind = errno === NBD_EPERM ? 'permission-denied' : errno === NBD_ENOSPC ? 'out-of-range' : 'invalid-argument'
  }
}

/**
 * A backend cannot zero this range faster than writing zeroes; thrown by `zero`
 * when asked for a fast zero, and answered with NBD_ENOTSUP as the spec requires.
 */
export class FastZeroUnsupportedError extends CairnError {
  override readonly name = 'FastZeroUnsupportedError'
  readonly kind = 'failed-precondition'
}

/** The peer closed or reset the connection while the server waited for bytes. */
export class ConnectionClosedError extends CairnError {
  override readonly name = 'ConnectionClosedError'
  readonly kind = 'unavailable'
}

/** What a request was doing, which decides between ENOSPC and ENOMEM for exhausted budgets. */
function isWriteCommand(command: number): boolean {
  return command === NBD_CMD_WRITE || command === NBD_CMD_WRITE_ZEROES || command === NBD_CMD_TRIM
}

const ERRNO_BY_KIND: Record<ErrorKind, NbdErrno> = {
  'invalid-argument': NBD_EINVAL,
  'out-of-range': NBD_EINVAL,
  'permission-denied': NBD_EPERM,
  unauthenticated: NBD_EPERM,
  // A volume that refuses writes for a state reason (fenced, detached) is, to the
  // client, a device that does not permit the operation.
  'failed-precondition': NBD_EPERM,
  'resource-exhausted': NBD_ENOSPC,
  'not-found': NBD_EIO,
  'already-exists': NBD_EIO,
  aborted: NBD_EIO,
  unavailable: NBD_EIO,
  'data-loss': NBD_EIO,
  internal: NBD_EIO,
}

/**
 * The single mapping from internal errors to NBD errnos.
 *
 * - request rejections carry their own errno;
 * - a refused fast zero is ENOTSUP (the only place the spec allows it);
 * - a server shutting down is ESHUTDOWN, which tells the client to disconnect;
 * - otherwise by kind; an exhausted budget is ENOSPC for writes (space) and ENOMEM
 *   for reads (a read cannot run out of disk); anything foreign is EIO.
 */
export function toNbdErrno(err: unknown, command: number): NbdErrno {
  if (err instanceof NbdRequestRejectedError) return err.errno
  if (err instanceof FastZeroUnsupportedError) return NBD_ENOTSUP
  if (err instanceof ShuttingDownError) return NBD_ESHUTDOWN
  const kind = errorKind(err)
  if (kind === 'resource-exhausted' && !isWriteCommand(command)) return NBD_ENOMEM
  return ERRNO_BY_KIND[kind]
}

/** A message safe to put in a log line or an error chunk. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}
