/**
 * TEST INFRASTRUCTURE: the object store behind the test API server, shaped like
 * etcd under kube-apiserver: one global, increasing resourceVersion; a bounded
 * window of change history that watches replay from; compaction that makes
 * older resourceVersions answer 410 Expired, so clients' relist paths run.
 */
import { assert } from '../../core/errors.js'
import { expired } from './errors.js'
import type { JsonObject } from './patch.js'

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'

/** One change, as stored in the history window and delivered to watchers. */
export interface StoreEvent {
  resourceVersion: number
  /** `group/resource` of the object. */
  storageKey: string
  type: EventType
  object: JsonObject
  /** The object before the change (MODIFIED and DELETED), for selector transitions. */
  previous?: JsonObject
}

export type StoreListener = (event: StoreEvent) => void

function meta(obj: JsonObject): JsonObject {
  return obj.metadata as JsonObject
}

/** `namespace/name`, the key of an object within its resource. */
export function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`
}

export class ObjectStore {
  private resourceVersion = 0
  /** Watching or paging from a resourceVersion below this answers 410 Expired. */
  private compactedRevision = 0
  private history: StoreEvent[] = []
  private readonly objects = new Map<string, Map<string, JsonObject>>()
  private readonly uids = new Map<string, { storageKey: string; key: string }>()
  private readonly listeners = new Set<StoreListener>()

  /** @param historyWindowEvents how many changes watches can replay. */
  constructor(private readonly historyWindowEvents: number) {
    assert(historyWindowEvents >= 1, 'history window must hold at least one event')
  }

  currentRevision(): number {
    return this.resourceVersion
  }

  /** Throws 410 Expired when `rv` is older than the history window. */
  checkNotCompacted(rv: number, what: string): void {
    if (rv < this.compactedRevision) {
      throw expired(`too old resource version: ${rv} (${this.compactedRevision})${what === '' ? '' : `: ${what}`}`)
    }
  }

  /** Drops all history: every resourceVersion before now becomes too old. */
  compact(): void {
    this.history = []
    this.compactedRevision = this.resourceVersion
  }

  get(storageKey: string, key: string): JsonObject | undefined {
    const obj = this.objects.get(storageKey)?.get(key)
    return obj === undefined ? undefined : structuredClone(obj)
  }

  /** Objects of a resource, optionally in one namespace, sorted by key (the paging order). */
  list(storageKey: string, namespace?: string): Array<{ key: string; object: JsonObject }> {
    const bucket = this.objects.get(storageKey)
    if (bucket === undefined) return []
    const prefix = namespace === undefined ? '' : `${namespace}/`
    return [...bucket.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, object]) => ({ key, object: structuredClone(object) }))
  }

  hasUid(uid: string): boolean {
    return this.uids.has(uid)
  }

  /** Every stored object with its resource, for garbage collection. */
  *entries(): Generator<{ storageKey: string; key: string; object: JsonObject }> {
    for (const [storageKey, bucket] of this.objects) {
      for (const [key, object] of bucket) yield { storageKey, key, object: structuredClone(object) }
    }
  }

  /** Stores a created or changed object under a new resourceVersion; returns a copy. */
  put(storageKey: string, key: string, object: JsonObject): JsonObject {
    const bucket = this.objects.get(storageKey) ?? new Map<string, JsonObject>()
    this.objects.set(storageKey, bucket)
    const previous = bucket.get(key)
    const stored = structuredClone(object)
    meta(stored).resourceVersion = String(++this.resourceVersion)
    bucket.set(key, stored)
    this.uids.set(String(meta(stored).uid), { storageKey, key })
    this.record({ resourceVersion: this.resourceVersion, storageKey, type: previous ? 'MODIFIED' : 'ADDED', object: stored, previous })
    return structuredClone(stored)
  }

  /** Removes an object; the DELETED event carries a new resourceVersion, as in etcd. */
  remove(storageKey: string, key: string): JsonObject | undefined {
    const bucket = this.objects.get(storageKey)
    const previous = bucket?.get(key)
    if (bucket === undefined || previous === undefined) return undefined
    bucket.delete(key)
    this.uids.delete(String(meta(previous).uid))
    const gone = structuredClone(previous)
    meta(gone).resourceVersion = String(++this.resourceVersion)
    this.record({ resourceVersion: this.resourceVersion, storageKey, type: 'DELETED', object: gone, previous })
    return structuredClone(gone)
  }

  /** Drops a whole resource (its CRD was deleted), emitting DELETED for each object. */
  removeAll(storageKey: string): void {
    for (const { key } of this.list(storageKey)) this.remove(storageKey, key)
    this.objects.delete(storageKey)
  }

  /** Changes after `rv` that are still in the window; throws 410 Expired if some are not. */
  eventsSince(rv: number): StoreEvent[] {
    this.checkNotCompacted(rv, '')
    return this.history.filter((e) => e.resourceVersion > rv)
  }

  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private record(event: StoreEvent): void {
    this.history.push(event)
    if (this.history.length > this.historyWindowEvents) {
      // Dropping in batches keeps the cost amortized; the dropped revisions expire.
      const dropped = this.history.splice(0, Math.max(1, this.history.length - this.historyWindowEvents))
      this.compactedRevision = (dropped[dropped.length - 1] as StoreEvent).resourceVersion
    }
    for (const listener of [...this.listeners]) listener(event)
  }
}
