/**
 * TEST INFRASTRUCTURE: watch streams like kube-apiserver's: newline-delimited
 * JSON events from a resourceVersion, ADDED/MODIFIED/DELETED (with selector
 * transitions: an object leaving a label selector is DELETED for that watch),
 * periodic BOOKMARKs, an ERROR event with 410 Expired when the resourceVersion
 * has left the history window, and timeoutSeconds.
 */
import type { ServerResponse } from 'node:http'
import { ApiError } from './errors.js'
import type { JsonObject } from './patch.js'
import type { ResourceType } from './resources.js'
import { storageKey } from './resources.js'
import type { ObjectStore, StoreEvent } from './store.js'
import { toTable } from './table.js'

export interface WatchRequest {
  rt: ResourceType
  /** Only objects passing this filter are seen (namespace, label and field selectors). */
  matches: (obj: JsonObject) => boolean
  /** undefined or "0": start with ADDED for every current object. */
  resourceVersion: string | undefined
  bookmarks: boolean
  timeoutMs: number
  table: boolean
  present: (obj: JsonObject) => JsonObject
}

export interface WatchLimits {
  bookmarkIntervalMs: number
  /** A watcher whose socket buffers more than this is cut off, as the apiserver drops slow watchers. */
  maxBufferedBytes: number
}

/** One open watch; `close` ends it (server stop or client gone). */
export interface OpenWatch {
  close(): void
}

function translate(event: StoreEvent, matches: (obj: JsonObject) => boolean): 'ADDED' | 'MODIFIED' | 'DELETED' | undefined {
  const now = event.type !== 'DELETED' && matches(event.object)
  const before = event.previous !== undefined && matches(event.previous)
  if (event.type === 'DELETED') return before ? 'DELETED' : undefined
  if (now && before) return 'MODIFIED'
  if (now) return 'ADDED'
  return before ? 'DELETED' : undefined
}

/** Starts streaming to `res`; returns a handle, or undefined when the watch ended at once (410). */
export function startWatch(store: ObjectStore, req: WatchRequest, res: ServerResponse, limits: WatchLimits, onEnd: () => void): OpenWatch {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' })
  // Headers go out at once, as from kube-apiserver, so clients know the watch is established.
  res.flushHeaders()
  let closed = false
  const write = (type: string, object: JsonObject): void => {
    if (closed) return
    const payload = req.table && type !== 'ERROR' && type !== 'BOOKMARK' ? toTable(req.rt, [object], { resourceVersion: (object.metadata as JsonObject).resourceVersion ?? '' }) : object
    res.write(`${JSON.stringify({ type, object: payload })}\n`)
    if (res.writableLength > limits.maxBufferedBytes) close()
  }
  const deliver = (event: StoreEvent): void => {
    if (event.storageKey !== storageKey(req.rt)) return
    const type = translate(event, req.matches)
    if (type !== undefined) write(type, req.present(event.object))
  }
  const close = (): void => {
    if (closed) return
    closed = true
    unsubscribe()
    clearInterval(bookmarkTimer)
    clearTimeout(timeoutTimer)
    res.end()
    onEnd()
  }
  const unsubscribe = store.subscribe(deliver)
  const bookmarkTimer = setInterval(() => {
    if (req.bookmarks) write('BOOKMARK', { kind: req.rt.kind, apiVersion: req.present({}).apiVersion ?? '', metadata: { resourceVersion: String(store.currentRevision()) } })
  }, limits.bookmarkIntervalMs)
  const timeoutTimer = setTimeout(close, req.timeoutMs)
  res.on('close', close)
  replay(store, req, write, deliver, close)
  return { close }
}

/** Sends what happened before the watch started: current objects, or history after the resourceVersion. */
function replay(store: ObjectStore, req: WatchRequest, write: (type: string, object: JsonObject) => void, deliver: (e: StoreEvent) => void, close: () => void): void {
  if (req.resourceVersion === undefined || req.resourceVersion === '' || req.resourceVersion === '0') {
    for (const { object } of store.list(storageKey(req.rt))) if (req.matches(object)) write('ADDED', req.present(object))
    return
  }
  const rv = Number(req.resourceVersion)
  try {
    if (!Number.isSafeInteger(rv) || rv < 0) throw new ApiError(400, 'BadRequest', `invalid resource version: ${req.resourceVersion}`)
    for (const event of store.eventsSince(rv)) deliver(event)
  } catch (err) {
    if (!(err instanceof ApiError)) throw err
    write('ERROR', err.toStatus() as unknown as JsonObject)
    close()
  }
}
