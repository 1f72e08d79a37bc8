/**
 * The one table between Cairn's error kinds and gRPC status codes, both ways.
 *
 * A server turns any thrown error into a status whose code comes from the error's
 * kind and whose metadata carries the error's stable `name`; a client turns the
 * status back into the same typed error when it knows the class, or into a
 * `RemoteError` of the same kind when it does not.
 */
import { InterceptingCall, Metadata, status as Status, type ChannelOptions, type Client, type Interceptor, type ServiceError, type StatusObject } from '@grpc/grpc-js'
import { CairnError, errorKind, type ErrorKind } from './errors.js'

/** Metadata key carrying the server-side error class name. */
export const ERROR_NAME_METADATA_KEY = 'cairn-error-name'

const kindToCode: Record<ErrorKind, Status> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  'failed-precondition': Status.FAILED_PRECONDITION,
  aborted: Status.ABORTED,
  'out-of-range': Status.OUT_OF_RANGE,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  'permission-denied': Status.PERMISSION_DENIED,
  unauthenticated: Status.UNAUTHENTICATED,
  unavailable: Status.UNAVAILABLE,
  'data-loss': Status.DATA_LOSS,
  internal: Status.INTERNAL,
}

const codeToKind = new Map<Status, ErrorKind>(Object.entries(kindToCode).map(([kind, code]) => [code, kind as ErrorKind]))
// Codes no Cairn server sends on purpose, but transports and peers do.
codeToKind.set(Status.DEADLINE_EXCEEDED, 'unavailable')
codeToKind.set(Status.CANCELLED, 'aborted')
codeToKind.set(Status.UNIMPLEMENTED, 'failed-precondition')

/** The gRPC code for an error kind. */
export function grpcCodeForKind(kind: ErrorKind): Status {
  return kindToCode[kind]
}

/** The error kind for a gRPC code; unknown codes are internal. */
export function kindForGrpcCode(code: Status): ErrorKind {
  return codeToKind.get(code) ?? 'internal'
}

/**
 * Turns anything a handler threw into a status for the wire. Internal errors keep
 * their details in the server log, not on the wire.
 */
export function toGrpcStatus(err: unknown): Partial<StatusObject> {
  const kind = errorKind(err)
  const metadata = new Metadata()
  const name = err instanceof CairnError ? err.name : 'InternalError'
  metadata.set(ERROR_NAME_METADATA_KEY, name)
  const details = err instanceof CairnError && kind !== 'internal' ? err.message : 'internal error'
  return { code: kindToCode[kind], details, metadata }
}

/** A typed error raised on a server and received by a client that has no class for it. */
export class RemoteError extends CairnError {
  override readonly name = 'RemoteError'
  constructor(
    readonly kind: ErrorKind,
    /** The error's name on the server, or undefined when the status came from the transport. */
    readonly remoteName: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** A CairnError class that can be rebuilt from a message and a cause. */
export type CairnErrorClass = new (message: string, options?: { cause?: unknown }) => CairnError

/**
 * Rebuilds the typed error a server threw from its status: an instance of the class in
 * `known` whose name the server sent, else a `RemoteError` of the code's kind.
 * The original ServiceError is the cause.
 */
export function fromGrpcError(err: unknown, known: readonly CairnErrorClass[] = []): CairnError {
  if (err instanceof CairnError) return err
  const se = err as Partial<ServiceError>
  if (typeof se.code !== 'number') return new RemoteError('internal', undefined, String((err as Error)?.message ?? err), { cause: err })
  const remoteName = se.metadata?.get(ERROR_NAME_METADATA_KEY)[0]?.toString()
  const message = se.details ?? se.message ?? 'gRPC error'
  for (const Class of known) {
    // Compare the instance's stable `name`, not the constructor's, which bundlers may rename.
    const candidate = new Class(message, { cause: err })
    if (candidate.name === remoteName) return candidate
  }
  return new RemoteError(kindForGrpcCode(se.code), remoteName, message, { cause: err })
}

/** Metadata key carrying the cluster token (`Bearer <token>`), as HTTP's Authorization header. */
export const AUTHORIZATION_METADATA_KEY = 'authorization'

/**
 * A client interceptor that sends `authorization: Bearer <token>` on every call.
 * An interceptor rather than call credentials because grpc-js refuses call
 * credentials over plaintext channels, and pods may talk plaintext with a token.
 */
export function bearerTokenInterceptor(token: string): Interceptor {
  const value = `Bearer ${token}`
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTHORIZATION_METADATA_KEY, value)
        next(metadata, listener)
      },
    })
}

/** Receive window per connection and stream: batch reads answer with many MiB, and HTTP/2's 64 KiB default stalls them. */
export const CLIENT_FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024

/** First delay before reconnecting a channel whose server went away. */
export const CLIENT_RECONNECT_BACKOFF_INITIAL_MS = 200
/** Longest delay between reconnection attempts (grpc-js's default is 120 s). */
export const CLIENT_RECONNECT_BACKOFF_MAX_MS = 1000

export interface ClientChannelInit {
  /** Largest message either way. @default 67108864 (64 MiB) */
  maxMessageBytes?: number
  /** Cluster token sent as a bearer token on every call; none on a loopback dev cluster. */
  token?: string
}

/** The channel options every Cairn gRPC client uses. */
export function clientChannelOptions(init: ClientChannelInit): ChannelOptions {
  const maxMessageBytes = init.maxMessageBytes ?? 64 * 1024 * 1024
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc-node.flow_control_window': CLIENT_FLOW_CONTROL_WINDOW_BYTES,
    // grpc-js backs off up to 120 s between connection attempts; a storage node that
    // restarts after 20 s then stays unreachable for as long again. Storage nodes are
    // few and known, so retrying each once a second costs nothing.
    'grpc.initial_reconnect_backoff_ms': CLIENT_RECONNECT_BACKOFF_INITIAL_MS,
    'grpc.max_reconnect_backoff_ms': CLIENT_RECONNECT_BACKOFF_MAX_MS,
    ...(init.token === undefined ? {} : { interceptors: [bearerTokenInterceptor(init.token)] }),
  }
}

type UnaryCallback = (err: ServiceError | null, value?: unknown) => void
type UnaryMethod = (req: unknown, metadata: Metadata, options: { deadline: number }, cb: UnaryCallback) => void

/** Calls unary `method` of a loaded service client with a deadline; failures become the typed errors in `known`. */
export function callUnary<T>(client: Client, method: string, request: unknown, deadlineMs: number, known: readonly CairnErrorClass[]): Promise<T> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method] as UnaryMethod
  return new Promise<T>((resolve, reject) => {
    fn.call(client, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, value) => {
      if (err) reject(fromGrpcError(err, known))
      else resolve(value as T)
    })
  })
}
