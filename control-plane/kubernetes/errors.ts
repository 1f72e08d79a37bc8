/**
 * The one place where Kubernetes API failures become the typed errors of
 * control-plane/types.ts. Every request the Kubernetes ControlPlane makes goes
 * through {@link mapApiError}, so callers only ever see Cairn errors with a `kind`.
 *
 * | API server answer                 | Cairn error                           |
 * | --------------------------------- | ------------------------------------- |
 * | 404 NotFound                      | NotFoundError(kind, name)             |
 * | 409 AlreadyExists                 | AlreadyExistsError(kind, name)        |
 * | 409 Conflict (resourceVersion)    | ConflictError                         |
 * | 410 Expired / Gone                | StaleContinueTokenError               |
 * | 400 BadRequest, 422 Invalid       | InvalidArgumentError (server message) |
 * | 401, 403                          | KubernetesPermissionDeniedError       |
 * | 429 TooManyRequests               | ResourceExhaustedError                |
 * | 5xx, network failure, other       | KubernetesUnavailableError            |
 *
 * The mapped error's `cause` is a {@link KubernetesApiError} carrying the server's
 * Status (code, reason, message, field causes), so nothing the server said is lost.
 */
import { CairnError, InvalidArgumentError, ResourceExhaustedError, type ErrorKind } from '../../core/errors.js'
import {
  AlreadyExistsError,
  ConflictError,
  NotFoundError,
  StaleContinueTokenError,
  type ResourceKind,
} from '../types.js'

/** One field-level cause of a 422 Invalid. */
export interface StatusCause {
  field: string
  reason: string
  message: string
}

/** What the API server answered, as far as Cairn reads it. */
export class KubernetesApiError extends CairnError {
  override readonly name = 'KubernetesApiError'
  constructor(
    readonly kind: ErrorKind,
    /** HTTP status; 0 when no answer came (network failure). */
    readonly code: number,
    /** The Status reason (`NotFound`, `Conflict`, `Invalid`, …), or the network error code. */
    readonly reason: string,
    message: string,
    readonly causes: readonly StatusCause[],
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** The API server could not be reached or failed (5xx); retry later. */
export class KubernetesUnavailableError extends CairnError {
  override readonly name = 'KubernetesUnavailableError'
  readonly kind = 'unavailable'
}

/** The credentials in use may not do this (401/403): an RBAC problem, not a retryable one. */
export class KubernetesPermissionDeniedError extends CairnError {
  override readonly name = 'KubernetesPermissionDeniedError'
  readonly kind = 'permission-denied'
}

/**
 * A stored object does not convert to a domain object: a field has the wrong type or
 * breaks a rule the CRD schema cannot express (typically an object edited by hand).
 * Nothing is written back; the object has to be repaired.
 */
export class MalformedObjectError extends CairnError {
  override readonly name = 'MalformedObjectError'
  readonly kind = 'failed-precondition'
  constructor(
    readonly resource: ResourceKind,
    readonly resourceName: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${resource} ${JSON.stringify(resourceName)} is malformed: ${detail}`, options)
  }
}

/** Which object a request was about, for NotFound and AlreadyExists. */
export interface RequestTarget {
  resource: ResourceKind
  name: string
}

/** Reads the server's Status out of a client-node ApiException (its body is the raw JSON text). */
export function parseApiFailure(err: unknown): KubernetesApiError {
  const e = err as { code?: unknown; body?: unknown; message?: unknown }
  if (typeof e?.code === 'number' && e.code >= 100 && e.code < 600) {
    const status = parseStatus(e.body)
    const reason = typeof status.reason === 'string' ? status.reason : ''
    const message = typeof status.message === 'string' ? status.message : `HTTP ${e.code}`
    return new KubernetesApiError(kindOf(e.code), e.code, reason, message, causesOf(status), { cause: err })
  }
  // client-node's FetchError carries the socket error code (ECONNREFUSED, ETIMEDOUT, …).
  const netCode = typeof e?.code === 'string' ? e.code : 'NetworkError'
  const message = typeof e?.message === 'string' ? e.message : String(err)
  return new KubernetesApiError('unavailable', 0, netCode, message, [], { cause: err })
}

/** Maps a failed request to the typed error a ControlPlane caller sees. */
export function mapApiError(err: unknown, target: RequestTarget): CairnError {
  if (err instanceof CairnError && !(err instanceof KubernetesApiError)) return err
  const api = err instanceof KubernetesApiError ? err : parseApiFailure(err)
  const options = { cause: api }
  switch (api.code) {
    case 404:
      return new NotFoundError(target.resource, target.name, options)
    case 409:
      if (api.reason === 'AlreadyExists') return new AlreadyExistsError(target.resource, target.name, options)
      return new ConflictError(`${target.resource} ${JSON.stringify(target.name)} changed meanwhile: ${api.message}`, options)
    case 410:
      return new StaleContinueTokenError(`the list expired (${api.message}); restart it from the beginning`, options)
    case 400:
    case 422:
      return new InvalidArgumentError(api.message, options)
    case 401:
    case 403:
      return new KubernetesPermissionDeniedError(api.message, options)
    case 429:
      return new ResourceExhaustedError(`API server is throttling: ${api.message}`, options)
    default:
      return new KubernetesUnavailableError(`API server request failed (${api.code || api.reason}): ${api.message}`, options)
  }
}

function kindOf(code: number): ErrorKind {
  if (code === 404) return 'not-found'
  if (code === 409) return 'aborted'
  if (code === 410) return 'aborted'
  if (code === 400 || code === 422) return 'invalid-argument'
  if (code === 401 || code === 403) return 'permission-denied'
  if (code === 429) return 'resource-exhausted'
  return 'unavailable'
}

function parseStatus(body: unknown): Record<string, unknown> {
  let value = body
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body)
    } catch {
      return { message: body.slice(0, 1024) }
    }
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {}
}

function causesOf(status: Record<string, unknown>): StatusCause[] {
  const details = status.details as { causes?: unknown } | undefined
  if (!Array.isArray(details?.causes)) return []
  return details.causes.map((c: unknown) => {
    const cause = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>
    return {
      field: typeof cause.field === 'string' ? cause.field : '',
      reason: typeof cause.reason === 'string' ? cause.reason : '',
      message: typeof cause.message === 'string' ? cause.message : '',
    }
  })
}
