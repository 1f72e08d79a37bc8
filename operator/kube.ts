/**
 * The operator's one door to the Kubernetes API. Every write goes through
 * {@link KubeClient.write}, which refuses at once when this process is not the
 * leader (so a deposed leader cannot write even one more object) and counts the
 * write in `cairn_operator_api_writes_total`, which is how the tests see that
 * only the leader writes.
 */
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node'
import { Counter, type Registry } from 'prom-client'
import { CairnError, type ErrorKind } from '../core/errors.js'
import { GROUP, PLURAL, VERSION, type CairnKind } from './constants.js'
import type { KubeObject } from './types.js'

/** A write was attempted while this process does not hold the leader lease. */
export class NotLeaderError extends CairnError {
  override readonly name = 'NotLeaderError'
  readonly kind = 'unavailable'
}

/** The API server answered with an error status. `status` is the HTTP code (409 conflict, 404 not found, 410 gone). */
export class KubeApiError extends CairnError {
  override readonly name = 'KubeApiError'
  readonly kind: ErrorKind
  constructor(
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.kind = status === 404 ? 'not-found' : status === 409 ? 'aborted' : status === 422 || status === 400 ? 'invalid-argument' : 'unavailable'
  }
}

/** The HTTP status of an error thrown by client-node, or undefined for a transport error. */
export function httpStatus(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'number' ? code : undefined
}

/** Turns a client-node error into a KubeApiError (keeping the cause). */
export function toKubeError(err: unknown, what: string): Error {
  const status = httpStatus(err)
  if (status === undefined) return err instanceof Error ? err : new Error(String(err))
  const body = (err as { body?: unknown }).body
  const detail = typeof body === 'string' ? body.slice(0, 500) : ''
  return new KubeApiError(status, `${what}: HTTP ${status} ${detail}`, { cause: err })
}

export interface KubeClientComponents {
  registry: Registry
  /** Whether this process may write now (the leader elector's verdict). */
  isLeader: () => boolean
  /** Names the process in the writes metric, so two operators can be told apart. */
  identity: string
}

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)

export class KubeClient {
  readonly core: CoreV1Api
  readonly apps: AppsV1Api
  readonly custom: CustomObjectsApi
  readonly coordination: CoordinationV1Api
  private readonly writes: Counter<'kind'>

  constructor(
    readonly kubeConfig: KubeConfig,
    private readonly components: KubeClientComponents,
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api)
    this.apps = kubeConfig.makeApiClient(AppsV1Api)
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi)
    this.coordination = kubeConfig.makeApiClient(CoordinationV1Api)
    this.writes = new Counter({
      name: 'cairn_operator_api_writes_total',
      help: 'Writes the operator sent to the Kubernetes API, by object kind (Lease writes are the election itself).',
      labelNames: ['kind'],
      registers: [components.registry],
    })
  }

  /**
   * Runs one write. Refused with NotLeaderError unless this process leads,
   * except for Lease writes (the election). API errors become KubeApiError.
   */
  async write<T>(kind: string, what: string, call: () => Promise<T>): Promise<T> {
    if (kind !== 'Lease' && !this.components.isLeader()) throw new NotLeaderError(`not the leader: refusing ${what}`)
    this.writes.inc({ kind })
    try {
      return await call()
    } catch (err) {
      throw toKubeError(err, what)
    }
  }

  /** Runs one read; API errors become KubeApiError. */
  async read<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (err) {
      throw toKubeError(err, what)
    }
  }

  /** Like {@link read}, but undefined for 404. */
  async readOptional<T>(what: string, call: () => Promise<T>): Promise<T | undefined> {
    try {
      return await this.read(what, call)
    } catch (err) {
      if (httpStatus(err) === 404) return undefined
      throw err
    }
  }

  // ---------------------------------------------------------------- Cairn custom resources

  async getCr<T extends KubeObject>(kind: CairnKind, name: string): Promise<T | undefined> {
    return this.readOptional(`get ${kind} ${name}`, async () =>
      (await this.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL[kind], name })) as T,
    )
  }

  /** Replaces a custom resource's status, guarded by its resourceVersion (409 on a stale copy). */
  async replaceCrStatus<T extends KubeObject>(kind: CairnKind, obj: T): Promise<T> {
    const name = obj.metadata.name
    return this.write(kind, `update ${kind} ${name} status`, async () =>
      (await this.custom.replaceClusterCustomObjectStatus({ group: GROUP, version: VERSION, plural: PLURAL[kind], name, body: obj })) as T,
    )
  }

  /** Sets a custom resource's finalizers, guarded by `resourceVersion` so a concurrent change is a 409, not a lost finalizer. */
  async setCrFinalizers<T extends KubeObject>(kind: CairnKind, name: string, finalizers: string[], resourceVersion: string | undefined): Promise<T> {
    const body = { metadata: { finalizers, resourceVersion } }
    return this.write(kind, `set ${kind} ${name} finalizers`, async () =>
      (await this.custom.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL[kind], name, body }, MERGE)) as T,
    )
  }

  // ---------------------------------------------------------------- nodes

  /** Sets (string) or removes (null) node labels with a merge patch: touches no other label. */
  async patchNodeLabels(name: string, labels: Record<string, string | null>): Promise<void> {
    await this.write('Node', `label node ${name}`, () => this.core.patchNode({ name, body: { metadata: { labels } } }, MERGE))
  }
}
