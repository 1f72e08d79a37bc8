/**
 * Cluster-token authentication of the storage node's gRPC services.
 *
 * Every pod of a block store gets the same random token from the operator's
 * Secret. When a token is configured, every call must carry
 * `authorization: Bearer <token>`; anything else is refused with
 * UNAUTHENTICATED before a handler runs, so an unauthenticated caller can
 * neither read nor change stored data. Without a token the node only serves
 * on loopback (dev mode). Decision record: docs/adr/0015-cluster-credentials.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js'
import { CairnError, ConfigError } from '../core/errors.js'
import { AUTHORIZATION_METADATA_KEY, toGrpcStatus } from '../core/grpc.js'
import type { Logger } from '../core/logger.js'

/** A call without the cluster token, or with a wrong one. */
export class UnauthenticatedError extends CairnError {
  override readonly name = 'UnauthenticatedError'
  readonly kind = 'unauthenticated'
}

/** The node would listen beyond loopback without a cluster token: anyone on the network could read and delete shards. */
export class ClusterTokenRequiredError extends CairnError {
  override readonly name = 'ClusterTokenRequiredError'
  readonly kind = 'failed-precondition'
}

/** Shortest token accepted: the operator issues 32 random bytes (43 base64url characters); 16 characters is a floor against typos, not a strength target. */
export const CLUSTER_TOKEN_MIN_LENGTH = 16

/**
 * The token from `--cluster-token` (or `CAIRN_CLUSTER_TOKEN`) or from the file
 * `--cluster-token-file` names (trailing newline dropped, as Secret volumes and
 * editors leave one). Undefined when neither is set.
 * @throws ConfigError when both are set, the file cannot be read, or the token is too short
 */
export async function loadClusterToken(init: { clusterToken?: string | undefined; clusterTokenFile?: string | undefined }): Promise<string | undefined> {
  if (init.clusterToken !== undefined && init.clusterTokenFile !== undefined) {
    throw new ConfigError('set either --cluster-token (CAIRN_CLUSTER_TOKEN) or --cluster-token-file, not both')
  }
  let token = init.clusterToken
  if (init.clusterTokenFile !== undefined) {
    try {
      token = (await readFile(init.clusterTokenFile, 'utf8')).replace(/\r?\n$/, '')
    } catch (err) {
      throw new ConfigError(`cannot read --cluster-token-file ${init.clusterTokenFile}: ${(err as Error).message}`, { cause: err })
    }
  }
  if (token === undefined) return undefined
  if (token.length < CLUSTER_TOKEN_MIN_LENGTH || /\s/.test(token)) {
    throw new ConfigError(`the cluster token must be at least ${CLUSTER_TOKEN_MIN_LENGTH} characters without whitespace`)
  }
  return token
}

/** Whether a `host:port` listen address accepts only loopback connections (127.0.0.0/8, ::1, localhost). */
export function isLoopbackListen(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1').toLowerCase()
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return host === '::1' || host === '0:0:0:0:0:0:0:1'
}

/**
 * Refuses to serve without a token anywhere but loopback.
 * @throws ClusterTokenRequiredError
 */
export function assertTokenOrLoopback(listen: string, token: string | undefined): void {
  if (token !== undefined || isLoopbackListen(listen)) return
  throw new ClusterTokenRequiredError(
    `refusing to listen on ${listen} without a cluster token: set --cluster-token-file or CAIRN_CLUSTER_TOKEN, or listen on loopback for dev mode`,
  )
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** Whether an `authorization` value is `Bearer <the cluster token>`. */
export type TokenVerifier = (header: string | undefined) => boolean

/**
 * A verifier for `token`. Both sides are hashed to equal length first, so the
 * comparison takes the same time whatever the caller sent.
 */
export function tokenVerifier(token: string): TokenVerifier {
  const expected = digest(token)
  return (header) => {
    const sent = header?.startsWith('Bearer ') === true ? header.slice('Bearer '.length) : ''
    return timingSafeEqual(digest(sent), expected)
  }
}

/**
 * A server interceptor that ends every call lacking the right bearer token with
 * UNAUTHENTICATED (and the typed error's name in the trailers) before its handler
 * runs. `verifier` is read per call: the server is built before the token is
 * loaded at start, and undefined (loopback dev mode) lets every call through.
 * Each refusal is logged with its method and reason, never the token, and counted through `onRefused`.
 */
export function clusterTokenInterceptor(verifier: () => TokenVerifier | undefined, logger: Logger, onRefused: () => void = () => undefined): ServerInterceptor {
  return (method, call) => {
    const verify = verifier()
    if (verify === undefined) return new ServerInterceptingCall(call)
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const values = metadata.get(AUTHORIZATION_METADATA_KEY)
            const header = values.length === 1 ? values[0]?.toString() : undefined
            if (verify(header)) {
              // The token has done its job; handlers and their logs never see it.
              metadata.remove(AUTHORIZATION_METADATA_KEY)
              mdNext(metadata)
              return
            }
            const reason = values.length === 0 ? 'no authorization metadata' : values.length > 1 ? 'several authorization values' : 'wrong cluster token'
            logger.warn({ method: method.path, reason }, 'call refused: unauthenticated')
            onRefused()
            const status = toGrpcStatus(new UnauthenticatedError(`unauthenticated: ${reason}`))
            call.sendStatus({ code: status.code ?? Status.UNAUTHENTICATED, details: status.details ?? reason, metadata: status.metadata ?? null })
          },
        })
      },
    })
  }
}
