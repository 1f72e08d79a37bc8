/**
 * List+watch of one kind into a cache, as client-go's reflector does: list
 * (paged), then watch from the list's resourceVersion with bookmarks; a watch
 * that ends is resumed from the last resourceVersion seen (bookmarks keep it
 * fresh); a 410 Gone (the resourceVersion was compacted away) relists and
 * turns the difference into events, so no change is lost across the gap.
 */
import { Watch, type KubeConfig } from '@kubernetes/client-node'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import type { KubeObject } from './types.js'

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED'

interface ListPage<T> {
  items: T[]
  metadata?: { resourceVersion?: string; _continue?: string; continue?: string }
}

/** Options of an {@link Informer}. */
export interface InformerInit<T extends KubeObject> {
  /** Names the kind in logs. */
  kind: string
  /** One page of the list (client-node's typed or custom-object list call). */
  list: (continueToken: string | undefined) => Promise<ListPage<T>>
  /** The collection's URL path, e.g. `/api/v1/nodes`. */
  watchPath: string
  /** Extra query parameters shared by list and watch, e.g. a label selector. @default none */
  watchQuery?: Record<string, string>
  /** Called for every change, after the cache holds the new state. */
  onChange: (type: WatchEventType, obj: T) => void
  /** Server-side end of each watch; it is resumed at once. @default 300 */
  watchTimeoutSeconds?: number
  /** Pause after a failed list or watch, doubled up to 10 s. @default 200 */
  retryBaseMs?: number
}

export interface InformerComponents {
  kubeConfig: KubeConfig
  logger: Logger
}

/** The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name
}

export class Informer<T extends KubeObject> implements Startable {
  private readonly cache = new Map<string, T>()
  private running = false
  private loop: Promise<void> | undefined
  private abort: AbortController | undefined
  private wake: (() => void) | undefined
  private resourceVersion = ''
  private syncedResolve!: () => void
  /** Resolves once the first list is in the cache. */
  readonly synced: Promise<void> = new Promise((resolve) => (this.syncedResolve = resolve))
  /** Lists done so far (the first one plus every relist after a 410 or failure). */
  listCount = 0

  constructor(
    private readonly init: InformerInit<T>,
    private readonly components: InformerComponents,
  ) {}

  async start(): Promise<void> {
    this.running = true
    this.loop = this.run()
  }

  async stop(): Promise<void> {
    this.running = false
    this.abort?.abort()
    this.wake?.()
    await this.loop
  }

  get(key: string): T | undefined {
    return this.cache.get(key)
  }

  list(): T[] {
    return [...this.cache.values()]
  }

  private async run(): Promise<void> {
    let failures = 0
    let needList = true
    while (this.running) {
      try {
        if (needList) await this.relist()
        needList = false
        const outcome = await this.watchOnce()
        if (outcome === 'expired') {
          this.components.logger.info({ kind: this.init.kind }, 'watch expired (410 Gone): relisting')
          needList = true
        }
        failures = 0
      } catch (err) {
        if (!this.running) break
        failures++
        needList = true
        const delayMs = Math.min(10_000, (this.init.retryBaseMs ?? 200) * 2 ** Math.min(failures - 1, 10))
        this.components.logger.warn({ kind: this.init.kind, err, delayMs }, 'list or watch failed; retrying')
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs)
          this.wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    }
  }

  private async relist(): Promise<void> {
    const items = new Map<string, T>()
    let token: string | undefined
    let rv = ''
    do {
      const page = await this.init.list(token)
      for (const item of page.items) items.set(objectKey(item), item)
      rv = page.metadata?.resourceVersion ?? rv
      token = page.metadata?._continue ?? page.metadata?.continue
    } while (token !== undefined && token !== '')
    this.listCount++
    const previous = new Map(this.cache)
    this.cache.clear()
    for (const [key, item] of items) this.cache.set(key, item)
    this.resourceVersion = rv
    for (const [key, item] of items) {
      const old = previous.get(key)
      if (old === undefined) this.init.onChange('ADDED', item)
      else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) this.init.onChange('MODIFIED', item)
    }
    for (const [key, old] of previous) if (!items.has(key)) this.init.onChange('DELETED', old)
    this.syncedResolve()
  }

  /** Watches until the server ends the watch ('ended'), answers 410 ('expired'), or stop() is called. */
  private async watchOnce(): Promise<'ended' | 'expired'> {
    let expired = false
    let finish!: (err: unknown) => void
    const done = new Promise<unknown>((resolve) => (finish = resolve))
    const query = {
      ...this.init.watchQuery,
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: this.init.watchTimeoutSeconds ?? 300,
    }
    this.abort = await new Watch(this.components.kubeConfig).watch(
      this.init.watchPath,
      query,
      (type: string, obj: T & { code?: number }) => {
        if (type === 'ERROR') {
          if (obj.code === 410) expired = true
          this.abort?.abort()
          return
        }
        if (type === 'BOOKMARK') {
          this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion
          return
        }
        this.apply(type as WatchEventType, obj)
      },
      (err: unknown) => finish(err),
    )
    if (!this.running) this.abort.abort()
    const err = await done
    if (expired || (err as { statusCode?: number } | null)?.statusCode === 410) return 'expired'
    if (err !== null && err !== undefined && this.running && (err as Error).name !== 'AbortError') throw err
    return 'ended'
  }

  private apply(type: WatchEventType, obj: T): void {
    const key = objectKey(obj)
    this.resourceVersion = obj.metadata.resourceVersion ?? this.resourceVersion
    if (type === 'DELETED') this.cache.delete(key)
    else this.cache.set(key, obj)
    this.init.onChange(type, obj)
  }
}
