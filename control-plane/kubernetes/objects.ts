/**
 * The cairn.dev objects through client-node's CustomObjectsApi: every request the
 * Kubernetes ControlPlane makes, each one mapping its failures through
 * errors.ts and checking what came back with resource.ts. Nothing above this
 * module sees an ApiException or an untyped object.
 */
import { Observable, type CustomObjectsApi, type ObservableMiddleware, type RequestContext, type ResponseContext } from '@kubernetes/client-node'
import type { ResourceKind } from '../types.js'
import { GROUP, PLURAL, VERSION } from './constants.js'
import { mapApiError, parseApiFailure } from './errors.js'
import { asResource, isRecord, type CustomResource, type NewCustomResource } from './resource.js'

export interface ListRequest {
  limit: number
  continue?: string
  labelSelector?: string
}

export interface ListResponse {
  items: CustomResource[]
  /** The API server's continue token; absent on the last page. */
  continue?: string
}

/** Delete only the incarnation that was read, in the state it was read. */
export interface DeletePreconditions {
  uid: string
  resourceVersion?: string
}

export class CairnObjects {
  /** Per-request options: a deadline on every request, so a hung API server cannot hang a caller. */
  private readonly options: { middleware: ObservableMiddleware[]; middlewareMergeStrategy: 'append' }

  constructor(
    private readonly api: CustomObjectsApi,
    requestTimeoutMs: number,
  ) {
    // The object-parameter API hands options to the observable layer unwrapped, so this is an observable middleware.
    const deadline: ObservableMiddleware = {
      pre: (context: RequestContext) => {
        context.setSignal(AbortSignal.timeout(requestTimeoutMs))
        return new Observable(Promise.resolve(context))
      },
      post: (context: ResponseContext) => new Observable(Promise.resolve(context)),
    }
    this.options = { middleware: [deadline], middlewareMergeStrategy: 'append' }
  }

  /** The object, or undefined when it does not exist. */
  async get(kind: ResourceKind, name: string): Promise<CustomResource | undefined> {
    try {
      return asResource(kind, await this.api.getClusterCustomObject({ ...this.type(kind), name }, this.options))
    } catch (err) {
      if (parseApiFailure(err).code === 404) return undefined
      throw mapApiError(err, { resource: kind, name })
    }
  }

  async create(body: NewCustomResource): Promise<CustomResource> {
    return this.call(body.kind, body.metadata.name, () => this.api.createClusterCustomObject({ ...this.type(body.kind), body }, this.options))
  }

  /** PUT of the main resource: spec and metadata; a stale resourceVersion → ConflictError. */
  async replace(kind: ResourceKind, cr: CustomResource): Promise<CustomResource> {
    const name = cr.metadata.name
    return this.call(kind, name, () => this.api.replaceClusterCustomObject({ ...this.type(kind), name, body: cr }, this.options))
  }

  /** PUT of the status subresource; a stale resourceVersion → ConflictError. */
  async replaceStatus(kind: ResourceKind, cr: CustomResource): Promise<CustomResource> {
    const name = cr.metadata.name
    return this.call(kind, name, () => this.api.replaceClusterCustomObjectStatus({ ...this.type(kind), name, body: cr }, this.options))
  }

  /** Deletes (or marks deleting, with finalizers); absent is success; a failed precondition → ConflictError. */
  async delete(kind: ResourceKind, name: string, preconditions: DeletePreconditions): Promise<void> {
    try {
      await this.api.deleteClusterCustomObject({ ...this.type(kind), name, body: { preconditions } }, this.options)
    } catch (err) {
      if (parseApiFailure(err).code === 404) return
      throw mapApiError(err, { resource: kind, name })
    }
  }

  async list(kind: ResourceKind, request: ListRequest): Promise<ListResponse> {
    let raw: unknown
    try {
      raw = await this.api.listClusterCustomObject({
        ...this.type(kind),
        limit: request.limit,
        ...(request.continue === undefined ? {} : { _continue: request.continue }),
        ...(request.labelSelector === undefined ? {} : { labelSelector: request.labelSelector }),
      }, this.options)
    } catch (err) {
      throw mapApiError(err, { resource: kind, name: '' })
    }
    const list = isRecord(raw) ? raw : {}
    const items = Array.isArray(list.items) ? list.items.map((item: unknown) => asResource(kind, item)) : []
    const token = isRecord(list.metadata) ? list.metadata.continue : undefined
    return typeof token === 'string' && token !== '' ? { items, continue: token } : { items }
  }

  private type(kind: ResourceKind): { group: string; version: string; plural: string } {
    return { group: GROUP, version: VERSION, plural: PLURAL[kind] }
  }

  private async call(kind: ResourceKind, name: string, request: () => Promise<unknown>): Promise<CustomResource> {
    let raw: unknown
    try {
      raw = await request()
    } catch (err) {
      throw mapApiError(err, { resource: kind, name })
    }
    return asResource(kind, raw)
  }
}
