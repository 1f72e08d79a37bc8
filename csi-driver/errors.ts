/**
 * Errors the CSI driver raises itself. Each has the kind whose gRPC code the CSI
 * specification mandates for the condition; control-plane errors keep their own
 * kinds (NotFoundError → NOT_FOUND, StaleContinueTokenError → ABORTED, ...).
 */
import { CairnError } from '../core/errors.js'

/** Another call on the same volume or snapshot is in flight (CSI: "operation pending"). */
export class OperationPendingError extends CairnError {
  override readonly name = 'OperationPendingError'
  readonly kind = 'aborted'
}

/** A CSI id or name the driver does not hold (the RPC's NOT_FOUND case). */
export class CsiNotFoundError extends CairnError {
  override readonly name = 'CsiNotFoundError'
  readonly kind = 'not-found'
}

/** A requested capacity the driver cannot honour (CSI: "unsupported capacity_range"). */
export class CapacityOutOfRangeError extends CairnError {
  override readonly name = 'CapacityOutOfRangeError'
  readonly kind = 'out-of-range'
}

/** A name is taken by an object incompatible with the request (CSI: ALREADY_EXISTS). */
export class CsiAlreadyExistsError extends CairnError {
  override readonly name = 'CsiAlreadyExistsError'
  readonly kind = 'already-exists'
}

/** The volume's state forbids the call (published elsewhere, in use). */
export class CsiFailedPreconditionError extends CairnError {
  override readonly name = 'CsiFailedPreconditionError'
  readonly kind = 'failed-precondition'
}

/** A pagination token this driver did not issue, or one for another listing (CSI mandates ABORTED). */
export class InvalidStartingTokenError extends CairnError {
  override readonly name = 'InvalidStartingTokenError'
  readonly kind = 'aborted'
}

/** The engine holding an attached volume could not be reached, so a consistent head cannot be taken now. */
export class EngineUnavailableError extends CairnError {
  override readonly name = 'EngineUnavailableError'
  readonly kind = 'unavailable'
}

/** A mode of `cairn csi` that this build cannot serve (the node service is not wired in). */
export class ServiceNotAvailableError extends CairnError {
  override readonly name = 'ServiceNotAvailableError'
  readonly kind = 'failed-precondition'
}

/** The requisite topologies exclude the block store the volume would live in (CSI: RESOURCE_EXHAUSTED). */
export class TopologyUnsatisfiableError extends CairnError {
  override readonly name = 'TopologyUnsatisfiableError'
  readonly kind = 'resource-exhausted'
}

/** Whether a node exists could not be told (the API server did not answer); retry. */
export class NodeLookupUnavailableError extends CairnError {
  override readonly name = 'NodeLookupUnavailableError'
  readonly kind = 'unavailable'
}
