/**
 * Typed errors shared by every component.
 *
 * Each condition is its own class with a stable `name` (tests assert the name,
 * never the message) and an optional `cause`. Every error also carries a
 * `kind`, the one classification that the edges of the system translate into
 * wire errors: gRPC status codes here, NBD errnos and CSI codes elsewhere. A
 * new error only has to pick its kind; no edge needs to learn its class.
 */

/** How an error surfaces on the wire. Mirrors the gRPC canonical codes that Cairn uses. */
export type ErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'aborted'
  | 'out-of-range'
  | 'resource-exhausted'
  | 'permission-denied'
  | 'unauthenticated'
  | 'unavailable'
  | 'data-loss'
  | 'internal'

export abstract class CairnError extends Error {
  abstract override readonly name: string
  abstract readonly kind: ErrorKind

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** A request or option failed validation. */
export class InvalidArgumentError extends CairnError {
  override readonly name = 'InvalidArgumentError'
  readonly kind = 'invalid-argument'
}

/** Configuration (flags, environment) failed validation. */
export class ConfigError extends CairnError {
  override readonly name = 'ConfigError'
  readonly kind = 'invalid-argument'
}

/** A broken invariant: a bug, never a user error. */
export class AssertionFailedError extends CairnError {
  override readonly name = 'AssertionFailedError'
  readonly kind = 'internal'
}

/** A bounded queue or budget is full; retry later. */
export class ResourceExhaustedError extends CairnError {
  override readonly name = 'ResourceExhaustedError'
  readonly kind = 'resource-exhausted'
}

/** A component is stopping or stopped and refuses new work. */
export class ShuttingDownError extends CairnError {
  override readonly name = 'ShuttingDownError'
  readonly kind = 'unavailable'
}

/** Fails loudly when an invariant does not hold. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailedError(message)
}

/** The kind of any thrown value; foreign errors are internal. */
export function errorKind(err: unknown): ErrorKind {
  return err instanceof CairnError ? err.kind : 'internal'
}
