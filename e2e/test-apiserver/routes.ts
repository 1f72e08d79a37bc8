/**
 * TEST INFRASTRUCTURE: maps REST paths and verbs onto the generic storage, the
 * way kube-apiserver lays them out:
 * `/api/v1[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]` and
 * `/apis/<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import yaml from 'js-yaml'
import { ApiError, badRequest, expired, methodNotAllowed } from './errors.js'
import { isObject, jsonPatch, mergePatch, strategicAsMergePatch, type Json, type JsonObject } from './patch.js'
import type { ResourceRegistry, ResourceType } from './resources.js'
import { groupVersion, storageKey } from './resources.js'
import { meta, type Propagation, type WriteOptions } from './rest.js'
import { parseFieldSelector, parseLabelSelector } from './selectors.js'
import { parseJsonBody, readBody, sendJson, type ServerContext } from './server.js'
import { toTable, wantsTable } from './table.js'
import { startWatch } from './watch.js'

export interface ResourceRoute {
  rt: ResourceType
  namespace?: string
  name?: string
  subresource?: string
}

function notFoundPath(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource')
}

/** Resolves a resource path; throws 404 for anything the registry does not serve. */
export function parseRoute(registry: ResourceRegistry, pathname: string): ResourceRoute {
  const parts = pathname.split('/').filter((p) => p !== '').map(decodeURIComponent)
  let group: string
  let version: string
  let rest: string[]
  if (parts[0] === 'api' && parts.length >= 3) [group, version, rest] = ['', parts[1] ?? '', parts.slice(2)]
  else if (parts[0] === 'apis' && parts.length >= 4) [group, version, rest] = [parts[1] ?? '', parts[2] ?? '', parts.slice(3)]
  else throw notFoundPath()
  let namespace: string | undefined
  // `namespaces/<ns>/<resource>...` scopes a namespaced resource; `namespaces/<ns>[/status]` is the Namespace itself.
  if (rest[0] === 'namespaces' && rest.length >= 3 && registry.lookup(group, version, rest[2] ?? '') !== undefined) {
    namespace = rest[1]
    rest = rest.slice(2)
  }
  const [resource, name, subresource, ...extra] = rest
  const rt = registry.lookup(group, version, resource ?? '')
  if (rt === undefined || extra.length > 0) throw notFoundPath()
  if (rt.namespaced && namespace === undefined && name !== undefined) throw notFoundPath()
  if (subresource !== undefined && !(subresource === 'status' && rt.statusSubresource)) throw notFoundPath()
  return { rt, namespace, name, subresource }
}

function writeOptions(query: URLSearchParams): WriteOptions {
  return { strict: query.get('fieldValidation') === 'Strict', dryRun: query.getAll('dryRun').includes('All') }
}

function contentType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? 'application/json').split(';')[0]?.trim() ?? ''
}

async function jsonBody(ctx: ServerContext, req: IncomingMessage): Promise<Json> {
  const type = contentType(req)
  const text = await readBody(req, ctx.options.maxRequestBodyBytes)
  if (type === 'application/yaml') return yaml.load(text) as Json
  if (type !== 'application/json' && type !== '*/*') throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`)
  return parseJsonBody(text)
}

/** Serves one request on a resource path. */
export async function handleResource(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, route: ResourceRoute, query: URLSearchParams): Promise<void> {
  const { rt, namespace, name, subresource } = route
  const table = wantsTable(req.headers.accept)
  const reply = (code: number, obj: JsonObject): void => sendJson(res, code, table && obj.kind !== 'Status' ? toTable(rt, [obj], { resourceVersion: meta(obj).resourceVersion ?? '' }) : obj)
  switch (req.method) {
    case 'GET':
      if (name !== undefined) return reply(200, ctx.rest.get(rt, namespace, name))
      if (query.get('watch') === 'true' || query.get('watch') === '1') return serveWatch(ctx, res, route, query, table)
      return sendJson(res, 200, list(ctx, route, query, table))
    case 'POST':
      if (name !== undefined) throw methodNotAllowed(`POST is not allowed on a named ${rt.resource}`)
      return reply(201, ctx.rest.create(rt, namespace, await jsonBody(ctx, req), writeOptions(query)))
    case 'PUT':
      if (name === undefined) throw methodNotAllowed(`PUT needs a name`)
      return reply(200, ctx.rest.update(rt, namespace, name, await jsonBody(ctx, req), subresource, writeOptions(query)))
    case 'PATCH':
      if (name === undefined) throw methodNotAllowed(`PATCH needs a name`)
      return reply(200, await patch(ctx, req, route, name, query))
    case 'DELETE':
      if (name === undefined) return sendJson(res, 200, deleteCollection(ctx, route, query))
      return serveDelete(ctx, req, res, route, name, query)
    default:
      throw methodNotAllowed(`the server does not allow this method on the requested resource`)
  }
}

async function patch(ctx: ServerContext, req: IncomingMessage, route: ResourceRoute, name: string, query: URLSearchParams): Promise<JsonObject> {
  const { rt, namespace, subresource } = route
  const type = contentType(req)
  const text = await readBody(req, ctx.options.maxRequestBodyBytes)
  const opts = writeOptions(query)
  if (type === 'application/apply-patch+yaml') {
    // Server-side apply without field ownership: create when absent, else merge.
    const applied = yaml.load(text) as Json
    const exists = ctx.store.get(storageKey(rt), `${namespace ?? ''}/${name}`) !== undefined
    if (!exists) return ctx.rest.create(rt, namespace, applied, opts)
    return ctx.rest.update(rt, namespace, name, mergePatch(ctx.rest.get(rt, namespace, name), applied), subresource, opts)
  }
  const body = parseJsonBody(text)
  const current = ctx.rest.get(rt, namespace, name)
  let next: Json
  if (type === 'application/merge-patch+json') next = mergePatch(current, body)
  else if (type === 'application/strategic-merge-patch+json') next = mergePatch(current, strategicAsMergePatch(body))
  else if (type === 'application/json-patch+json') next = jsonPatch(current, body)
  else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`)
  if (!isObject(next)) throw badRequest('the patch did not produce an object')
  // A patch that does not name a resourceVersion applies to whatever is stored (no precondition).
  const patchedRv = meta(next).resourceVersion
  const patchNamesRv = type === 'application/json-patch+json' ? patchedRv !== meta(current).resourceVersion : isObject(body) && isObject(body.metadata) && body.metadata.resourceVersion !== undefined
  if (!patchNamesRv) meta(next).resourceVersion = meta(current).resourceVersion ?? ''
  return ctx.rest.update(rt, namespace, name, next, subresource, opts)
}

function filterFor(ctx: ServerContext, route: ResourceRoute, query: URLSearchParams): (obj: JsonObject) => boolean {
  const labels = parseLabelSelector(query.get('labelSelector'))
  const fields = parseFieldSelector(query.get('fieldSelector'), ['metadata.name', 'metadata.namespace', ...route.rt.fieldSelectors])
  return (obj) => {
    const m = meta(obj)
    if (route.namespace !== undefined && m.namespace !== route.namespace) return false
    if (!labels.empty && !labels.matches(isObject(m.labels) ? (m.labels as Record<string, string>) : {})) return false
    if (fields.empty) return true
    const values: Record<string, string | undefined> = { 'metadata.name': String(m.name), 'metadata.namespace': String(m.namespace ?? '') }
    for (const field of route.rt.fieldSelectors) values[field] = fieldValue(obj, field)
    return fields.matches(values)
  }
}

function fieldValue(obj: JsonObject, path: string): string | undefined {
  let node: Json | undefined = obj
  for (const key of path.split('.')) node = isObject(node) ? node[key] : undefined
  return node === undefined || node === null ? '' : String(node)
}

interface ContinueToken {
  rv: number
  start: string
}

function decodeContinue(token: string): ContinueToken {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as ContinueToken
    if (typeof parsed.rv === 'number' && typeof parsed.start === 'string') return parsed
  } catch {
    // fall through to the BadRequest below
  }
  throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)')
}

/**
 * A list page. Pages come from the live store after the continue key (not an
 * etcd snapshot at the first page's revision); a token older than the history
 * window answers 410 Expired as it would after etcd compaction.
 */
function list(ctx: ServerContext, route: ResourceRoute, query: URLSearchParams, table: boolean): JsonObject {
  const { rt } = route
  const matches = filterFor(ctx, route, query)
  const limit = Number(query.get('limit') ?? '0')
  if (!Number.isSafeInteger(limit) || limit < 0) throw badRequest(`invalid limit: ${query.get('limit')}`)
  const token = query.get('continue')
  let start = ''
  let listRv = ctx.store.currentRevision()
  if (token) {
    const decoded = decodeContinue(token)
    if (decoded.rv < ctx.store.currentRevision()) {
      try {
        ctx.store.checkNotCompacted(decoded.rv, '')
      } catch {
        throw expired('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.')
      }
    }
    start = decoded.start
    listRv = decoded.rv
  }
  const rv = query.get('resourceVersion')
  if (rv && query.get('resourceVersionMatch') === 'Exact') ctx.store.checkNotCompacted(Number(rv), '')
  const all = ctx.store.list(storageKey(rt), route.namespace).filter((e) => e.key > start && matches(e.object))
  const page = limit > 0 ? all.slice(0, limit) : all
  const listMeta: JsonObject = { resourceVersion: String(listRv) }
  if (page.length < all.length) {
    const last = page[page.length - 1]?.key ?? ''
    listMeta.continue = Buffer.from(JSON.stringify({ rv: listRv, start: last })).toString('base64url')
    listMeta.remainingItemCount = all.length - page.length
  }
  const items = page.map((e) => ctx.rest.present(rt, e.object))
  if (table) return toTable(rt, items, listMeta)
  return { kind: rt.listKind, apiVersion: groupVersion(rt), metadata: listMeta, items }
}

function serveWatch(ctx: ServerContext, res: ServerResponse, route: ResourceRoute, query: URLSearchParams, table: boolean): void {
  const timeoutSeconds = Number(query.get('timeoutSeconds') ?? ctx.options.defaultWatchTimeoutSeconds)
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) throw badRequest(`invalid timeoutSeconds: ${query.get('timeoutSeconds')}`)
  const matches = filterFor(ctx, route, query)
  const watch = startWatch(
    ctx.store,
    {
      rt: route.rt,
      matches,
      resourceVersion: query.get('resourceVersion') ?? undefined,
      bookmarks: query.get('allowWatchBookmarks') === 'true',
      timeoutMs: (timeoutSeconds === 0 ? ctx.options.defaultWatchTimeoutSeconds : timeoutSeconds) * 1000,
      table,
      present: (obj) => ctx.rest.present(route.rt, obj),
    },
    res,
    { bookmarkIntervalMs: ctx.options.bookmarkIntervalMs, maxBufferedBytes: ctx.options.maxWatchBufferedBytes },
    () => ctx.watches.delete(watch),
  )
  ctx.watches.add(watch)
}

async function deleteOptions(ctx: ServerContext, req: IncomingMessage, query: URLSearchParams): Promise<{ propagation: Propagation; preconditionRv?: string; preconditionUid?: string; dryRun: boolean }> {
  const text = await readBody(req, ctx.options.maxRequestBodyBytes)
  const body = text.trim() === '' ? {} : parseJsonBody(text)
  const opts = isObject(body) ? body : {}
  const pre = isObject(opts.preconditions) ? opts.preconditions : {}
  let propagation = (query.get('propagationPolicy') ?? opts.propagationPolicy ?? 'Background') as string
  if (opts.orphanDependents === true) propagation = 'Orphan'
  if (!['Background', 'Foreground', 'Orphan'].includes(propagation)) throw badRequest(`unsupported propagationPolicy: ${propagation}`)
  const dryRun = query.getAll('dryRun').includes('All') || (Array.isArray(opts.dryRun) && opts.dryRun.includes('All'))
  return {
    propagation: propagation as Propagation,
    preconditionRv: typeof pre.resourceVersion === 'string' ? pre.resourceVersion : undefined,
    preconditionUid: typeof pre.uid === 'string' ? pre.uid : undefined,
    dryRun,
  }
}

/** Immediate deletes answer a Success Status; pending ones (finalizers) the object. */
async function serveDelete(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, route: ResourceRoute, name: string, query: URLSearchParams): Promise<void> {
  const { rt, namespace } = route
  const { object, removed } = ctx.rest.delete(rt, namespace, name, await deleteOptions(ctx, req, query))
  if (!removed) return sendJson(res, 200, object)
  const m = meta(object)
  sendJson(res, 200, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Success',
    details: { name, group: rt.group, kind: rt.resource, uid: m.uid ?? '' },
  })
}

function deleteCollection(ctx: ServerContext, route: ResourceRoute, query: URLSearchParams): JsonObject {
  const matches = filterFor(ctx, route, query)
  const items: JsonObject[] = []
  for (const { object } of ctx.store.list(storageKey(route.rt), route.namespace)) {
    if (!matches(object)) continue
    const m = meta(object)
    items.push(ctx.rest.delete(route.rt, m.namespace as string | undefined, String(m.name), {}).object)
  }
  return { kind: route.rt.listKind, apiVersion: groupVersion(route.rt), metadata: { resourceVersion: String(ctx.store.currentRevision()) }, items }
}
