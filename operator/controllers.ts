/**
 * The controller runtime of one leadership term: the informers (list+watch
 * caches), one keyed work queue per reconciled kind, the event handlers that
 * map changes to keys (owned objects to their owner), and a periodic resync.
 * Built when this process becomes leader, stopped when it stops being one.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import { reconcileBlockStore } from './blockstore-reconciler.js'
import { BLOCKSTORE_LABEL, COMPONENT_LABEL, GROUP, NAME_LABEL, PLURAL, VERSION, type CairnKind } from './constants.js'
import type { Caches, ReconcilerContext } from './context.js'
import type { EventRecorder } from './events.js'
import { Informer, type InformerInit } from './informer.js'
import { NotLeaderError, type KubeClient } from './kube.js'
import type { OperatorMetrics } from './metrics.js'
import { reconcileStoragePolicy } from './policy-reconciler.js'
import type { KubeObject } from './types.js'
import { reconcileSnapshot, reconcileVolume } from './volume-reconciler.js'
import { WorkQueue, type WorkQueueInit } from './work-queue.js'
import { UsagePoller, type StatsDialer, type UsagePollerInit } from './usage-poller.js'
import { GcScheduler, type GcRunner, type GcSchedulerInit } from './gc-schedule.js'
import { NotReadyTracker } from './not-ready-tracker.js'

export interface ControllersInit {
  namespace: string
  image: string
  /** Every key of every kind is queued again this often, repairing anything a dropped event or a full queue missed. */
  resyncIntervalMs: number
  queue: WorkQueueInit
  /** Server-side length of each watch. */
  watchTimeoutSeconds: number
  /** Storage-node usage polling (operator/usage-poller.ts); namespace comes from above. */
  usage?: Omit<UsagePollerInit, 'namespace'>
  /** Scheduled garbage collection; none without a runner. */
  gc?: GcSchedulerInit & { runner: GcRunner }
}

export interface ControllersComponents {
  kube: KubeClient
  kubeConfig: KubeConfig
  logger: Logger
  metrics: OperatorMetrics
  events: EventRecorder
  /** Unix ms; member down timeouts and GC schedules are judged by it. */
  now: () => number
  /** @default a gRPC ShardClient */
  statsDialer?: StatsDialer
}

const RECONCILERS: Record<CairnKind, (ctx: ReconcilerContext, name: string) => Promise<number | void>> = {
  BlockStore: reconcileBlockStore,
  StoragePolicy: reconcileStoragePolicy,
  Volume: reconcileVolume,
  Snapshot: reconcileSnapshot,
}

export class Controllers implements Startable {
  readonly caches: Caches
  readonly queues: Record<CairnKind, WorkQueue>
  readonly usage: UsagePoller
  /** Present when the operator was given a GC runner. */
  readonly gc: GcScheduler | undefined
  private readonly notReady = new NotReadyTracker()
  private resyncTimer: NodeJS.Timeout | undefined
  private stopped = false
  private synced = false
  private signalStop!: () => void
  private readonly stopSignal = new Promise<void>((resolve) => (this.signalStop = resolve))

  constructor(
    private readonly init: ControllersInit,
    private readonly components: ControllersComponents,
  ) {
    this.queues = this.makeQueues()
    this.caches = this.makeCaches()
    this.usage = new UsagePoller(
      { ...init.usage, namespace: init.namespace },
      { kube: components.kube, caches: this.caches, logger: components.logger, onChange: (blockStore) => this.queues.BlockStore.add(blockStore) },
      components.statsDialer,
    )
    const gc = init.gc
    this.gc = gc === undefined
      ? undefined
      : new GcScheduler(gc, { runner: gc.runner, kube: components.kube, caches: this.caches, events: components.events, logger: components.logger, metrics: components.metrics, now: components.now })
  }

  private makeQueues(): Record<CairnKind, WorkQueue> {
    const { metrics, logger } = this.components
    const queues = {} as Record<CairnKind, WorkQueue>
    for (const kind of Object.keys(RECONCILERS) as CairnKind[]) {
      const reconcile = RECONCILERS[kind]
      queues[kind] = new WorkQueue(this.init.queue, async (key) => reconcile(this.context(), key), {
        onDepth: (depth) => metrics.queueDepth.set({ kind }, depth),
        onDone: (key, seconds, error) => {
          metrics.reconcileDuration.observe({ kind }, seconds)
          if (error === undefined) return
          metrics.reconcileErrors.inc({ kind })
          // After losing leadership every write fails; that is the stop, not an error worth a warning.
          if (error instanceof NotLeaderError) logger.debug({ kind, key }, 'reconcile stopped: not the leader')
          else logger.warn({ kind, key, err: error }, 'reconcile failed; retrying with backoff')
        },
      })
    }
    return queues
  }

  private context(): ReconcilerContext {
    const { kube, logger, events } = this.components
    return { kube, logger, events, caches: this.caches, namespace: this.init.namespace, image: this.init.image, usage: this.usage, notReady: this.notReady, now: this.components.now }
  }

  private informer<T extends KubeObject>(init: Omit<InformerInit<T>, 'watchTimeoutSeconds'>): Informer<T> {
    return new Informer<T>({ ...init, watchTimeoutSeconds: this.init.watchTimeoutSeconds }, { kubeConfig: this.components.kubeConfig, logger: this.components.logger })
  }

  private custom<T extends KubeObject>(kind: CairnKind, onChange: (obj: T) => void): Informer<T> {
    const plural = PLURAL[kind]
    return this.informer<T>({
      kind,
      watchPath: `/apis/${GROUP}/${VERSION}/${plural}`,
      list: async (token) => (await this.components.kube.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural, limit: 500, _continue: token })) as never,
      onChange: (_type, obj) => onChange(obj),
    })
  }

  private makeCaches(): Caches {
    const { kube } = this.components
    const namespace = this.init.namespace
    const q = this.queues
    const ownerOf = (obj: KubeObject): void => {
      const owner = obj.metadata.labels?.[BLOCKSTORE_LABEL]
      if (owner !== undefined) q.BlockStore.add(owner)
    }
    const selector = `${NAME_LABEL}=cairn,${COMPONENT_LABEL}=storage-node` // every block store's pods and DaemonSets
    const caches: Caches = {
      nodes: this.informer({
        kind: 'Node',
        watchPath: '/api/v1/nodes',
        list: async (token) => (await kube.core.listNode({ limit: 500, _continue: token })) as never,
        onChange: () => this.enqueueAll('BlockStore'),
      }),
      pods: this.informer({
        kind: 'Pod',
        watchPath: `/api/v1/namespaces/${namespace}/pods`,
        watchQuery: { labelSelector: selector },
        list: async (token) => (await kube.core.listNamespacedPod({ namespace, labelSelector: selector, limit: 500, _continue: token })) as never,
        onChange: (_t, obj) => ownerOf(obj),
      }),
      daemonSets: this.informer({
        kind: 'DaemonSet',
        watchPath: `/apis/apps/v1/namespaces/${namespace}/daemonsets`,
        watchQuery: { labelSelector: selector },
        list: async (token) => (await kube.apps.listNamespacedDaemonSet({ namespace, labelSelector: selector, limit: 500, _continue: token })) as never,
        onChange: (_t, obj) => ownerOf(obj),
      }),
      blockStores: this.custom('BlockStore', (bs) => {
        q.BlockStore.add(bs.metadata.name)
        this.enqueueWhere('StoragePolicy', (p) => p.spec.blockStore === bs.metadata.name)
        this.enqueueWhere('Volume', (v) => v.spec.blockStore === bs.metadata.name)
      }),
      storagePolicies: this.custom('StoragePolicy', (p) => {
        q.StoragePolicy.add(p.metadata.name)
        this.enqueueWhere('Volume', (v) => v.spec.storagePolicy === p.metadata.name)
      }),
      volumes: this.custom('Volume', (v) => {
        q.Volume.add(v.metadata.name)
        // A deleting block store or policy waits for its last volume to go.
        if (this.caches.blockStores.get(v.spec.blockStore)?.metadata.deletionTimestamp !== undefined) q.BlockStore.add(v.spec.blockStore)
        if (this.caches.storagePolicies.get(v.spec.storagePolicy)?.metadata.deletionTimestamp !== undefined) q.StoragePolicy.add(v.spec.storagePolicy)
        this.enqueueWhere('Snapshot', (s) => s.spec.volume === v.metadata.name)
      }),
      snapshots: this.custom('Snapshot', (s) => q.Snapshot.add(s.metadata.name)),
    }
    return caches
  }

  private cacheOf(kind: CairnKind): Informer<KubeObject & { spec: Record<string, unknown> }> {
    const byKind = { BlockStore: this.caches.blockStores, StoragePolicy: this.caches.storagePolicies, Volume: this.caches.volumes, Snapshot: this.caches.snapshots }
    return byKind[kind] as never
  }

  // The caches are built after the queues, and events can only arrive once the informers start.
  private enqueueWhere<K extends CairnKind>(kind: K, match: (obj: { spec: Record<string, unknown> }) => boolean): void {
    for (const obj of this.cacheOf(kind)?.list() ?? []) if (match(obj)) this.queues[kind].add(obj.metadata.name)
  }

  private enqueueAll(kind: CairnKind): void {
    for (const obj of this.cacheOf(kind)?.list() ?? []) this.queues[kind].add(obj.metadata.name)
  }

  async start(): Promise<void> {
    const informers = Object.values(this.caches) as Informer<KubeObject>[]
    for (const informer of informers) await informer.start()
    // Stopping while a cache never syncs (API server unreachable) must not hang.
    await Promise.race([Promise.all(informers.map((i) => i.synced)), this.stopSignal])
    if (this.stopped) return
    this.synced = true
    for (const queue of Object.values(this.queues)) await queue.start()
    await this.usage.start()
    await this.gc?.start()
    this.resync()
  }

  /** Whether every cache has listed once, so the queues run; false while any list keeps failing (RBAC, API server). */
  get cachesSynced(): boolean {
    return this.synced
  }

  private resync(): void {
    for (const kind of Object.keys(this.queues) as CairnKind[]) this.enqueueAll(kind)
    // Block stores whose object is gone but whose node labels remain (removed while no operator ran).
    for (const node of this.caches.nodes.list()) {
      for (const key of Object.keys(node.metadata.labels ?? {})) {
        if (key.startsWith(`${GROUP}/storage-node.`)) this.queues.BlockStore.add(key.slice(`${GROUP}/storage-node.`.length))
      }
    }
    this.resyncTimer = setTimeout(() => this.resync(), this.init.resyncIntervalMs)
    this.resyncTimer.unref()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.signalStop()
    clearTimeout(this.resyncTimer)
    await this.gc?.stop()
    await this.usage.stop()
    await Promise.all(Object.values(this.queues).map((q) => q.stop()))
    await Promise.all((Object.values(this.caches) as Informer<KubeObject>[]).map((i) => i.stop()))
  }
}
