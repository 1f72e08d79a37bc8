/**
 * TEST INFRASTRUCTURE: errors of the test API server, shaped like kube-apiserver's
 * metav1.Status so that kubectl and @kubernetes/client-node react to them exactly
 * as they would against a real cluster (retry on Conflict, relist on Expired).
 */
import { CairnError, type ErrorKind } from '../../core/errors.js'

/** The metav1.StatusReason values the server produces. */
export type StatusReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Gone'
  | 'Expired'
  | 'BadRequest'
  | 'MethodNotAllowed'
  | 'UnsupportedMediaType'
  | 'NotAcceptable'
  | 'Forbidden'
  | 'InternalError'

/** One field-level problem, as in metav1.StatusCause. */
export interface StatusCause {
  reason: string
  message: string
  field?: string
}

/** A metav1.Status object. */
export interface Status {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: Record<string, never>
  status: 'Failure' | 'Success'
  message: string
  reason?: StatusReason
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[] }
  code: number
}

const kindByReason: Record<StatusReason, ErrorKind> = {
  NotFound: 'not-found',
  AlreadyExists: 'already-exists',
  Conflict: 'aborted',
  Invalid: 'invalid-argument',
  Gone: 'out-of-range',
  Expired: 'out-of-range',
  BadRequest: 'invalid-argument',
  MethodNotAllowed: 'invalid-argument',
  UnsupportedMediaType: 'invalid-argument',
  NotAcceptable: 'invalid-argument',
  Forbidden: 'permission-denied',
  InternalError: 'internal',
}

/** What a failed API request answers: an HTTP code plus a metav1.Status body. */
export class ApiError extends CairnError {
  override readonly name = 'ApiError'
  readonly kind: ErrorKind

  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details: Status['details'] = undefined,
  ) {
    super(message)
    this.kind = kindByReason[reason]
  }

  /** The body to send. */
  toStatus(): Status {
    const status: Status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.code,
    }
    if (this.details !== undefined) status.details = this.details
    return status
  }
}

/** Identifies an object in error messages: `storagepolicies.cairn.dev "fast"`. */
export interface ObjectRef {
  /** Plural resource name. */
  resource: string
  group: string
  kind: string
  name: string
}

function qualified(ref: ObjectRef): string {
  return ref.group === '' ? ref.resource : `${ref.resource}.${ref.group}`
}

export function notFound(ref: ObjectRef): ApiError {
  return new ApiError(404, 'NotFound', `${qualified(ref)} "${ref.name}" not found`, {
    name: ref.name,
    group: ref.group,
    kind: ref.resource,
  })
}

export function alreadyExists(ref: ObjectRef): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualified(ref)} "${ref.name}" already exists`, {
    name: ref.name,
    group: ref.group,
    kind: ref.resource,
  })
}

export function conflict(ref: ObjectRef, why: string): ApiError {
  return new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(ref)} "${ref.name}": ${why}`, {
    name: ref.name,
    group: ref.group,
    kind: ref.resource,
  })
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message)
}

export function expired(message: string): ApiError {
  return new ApiError(410, 'Expired', message)
}

export function methodNotAllowed(message: string): ApiError {
  return new ApiError(405, 'MethodNotAllowed', message)
}

/** A field error collected during validation; rendered like k8s field.Error. */
export interface FieldError {
  /** FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueForbidden, FieldValueTooLong, ... */
  type: string
  field: string
  /** The full "Invalid value: ...: detail" text. */
  text: string
}

/** 422 Invalid with one cause per field error, worded like kube-apiserver. */
export function invalid(ref: Pick<ObjectRef, 'group' | 'kind' | 'name'>, errors: FieldError[]): ApiError {
  const gk = ref.group === '' ? ref.kind : `${ref.kind}.${ref.group}`
  const texts = errors.map((e) => `${e.field}: ${e.text}`)
  const body = texts.length === 1 ? texts[0] : `[${texts.join(', ')}]`
  return new ApiError(422, 'Invalid', `${gk} "${ref.name}" is invalid: ${body}`, {
    name: ref.name,
    group: ref.group,
    kind: ref.kind,
    causes: errors.map((e) => ({ reason: e.type, message: e.text, field: e.field })),
  })
}
