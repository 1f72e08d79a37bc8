/**
 * `cairn operator`: campaigns for the leader Lease and, while it leads, runs
 * the controllers. Losing the lease stops every write at once (the client's
 * write gate) and then tears the controllers down; the process keeps
 * campaigning, so it takes over again when the lease comes free.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import type { Registry } from 'prom-client'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import { Controllers } from './controllers.js'
import { EventRecorder } from './events.js'
import { KubeClient } from './kube.js'
import { LeaderElector } from './leader-election.js'
import type { GcRunner } from './gc-schedule.js'
import type { StatsDialer } from './usage-poller.js'
import { createOperatorMetrics, type OperatorMetrics } from './metrics.js'

/** Options of an {@link Operator}. */
export interface OperatorInit {
  /** Namespace of the Lease, Events and storage-node objects. */
  namespace: string
  /** @default 'cairn-operator' */
  leaseName?: string
  /** Unique among operator replicas. */
  identity: string
  /** Storage-node image for BlockStores that name none. */
  image: string
  /** @default 15000 */
  leaseDurationMs?: number
  /** @default 10000 */
  renewDeadlineMs?: number
  /** @default 2000 */
  retryPeriodMs?: number
  /** @default 300000 */
  resyncIntervalMs?: number
  /** @default 300 */
  watchTimeoutSeconds?: number
  /** Reconciles running at once per kind. @default 2 */
  concurrency?: number
  /** @default 10000 */
  maxQueuedKeys?: number
  /** @default 100 */
  backoffBaseMs?: number
  /** @default 30000 */
  backoffMaxMs?: number
  /** Pause between rounds of asking storage nodes for their allocation and usage. @default 30000 */
  usagePollIntervalMs?: number
  /** Runs garbage collection of a block store (engine/gc); without it the operator schedules none. @default none */
  gc?: GcRunner
  /** How often the leader looks for block stores due a garbage collection. @default 30000 */
  gcCheckIntervalMs?: number
}

export interface OperatorComponents {
  kubeConfig: KubeConfig
  logger: Logger
  registry: Registry
  /** Unix ms clock for member down timeouts and GC schedules; tests inject one. @default Date.now */
  now?: () => number
  /** How storage nodes are asked for Stats; tests substitute one. @default a gRPC ShardClient */
  statsDialer?: StatsDialer
}

export class Operator implements Startable {
  readonly kube: KubeClient
  readonly elector: LeaderElector
  private readonly metrics: OperatorMetrics
  private controllers: Controllers | undefined
  /** Serialises start/stop of controllers across leadership changes. */
  private transition: Promise<void> = Promise.resolve()

  constructor(
    private readonly init: OperatorInit,
    private readonly components: OperatorComponents,
  ) {
    this.metrics = createOperatorMetrics(components.registry)
    this.kube = new KubeClient(components.kubeConfig, { registry: components.registry, identity: init.identity, isLeader: () => this.elector.isLeader() })
    this.elector = new LeaderElector(
      { namespace: init.namespace, leaseName: init.leaseName, identity: init.identity, leaseDurationMs: init.leaseDurationMs, renewDeadlineMs: init.renewDeadlineMs, retryPeriodMs: init.retryPeriodMs },
      { kube: this.kube, logger: components.logger, callbacks: { onStartedLeading: () => this.lead(), onStoppedLeading: () => this.follow() } },
    )
  }

  /** The running controllers while this process leads (tests read their caches). */
  get current(): Controllers | undefined {
    return this.controllers
  }

  async start(): Promise<void> {
    await this.elector.start()
  }

  async stop(): Promise<void> {
    await this.elector.stop()
    this.follow()
    await this.transition
  }

  /**
   * Why the operator is not ready, or undefined. A standby replica is ready: it is
   * doing its job by waiting. A leader is ready once its caches have synced: one that
   * cannot list what it watches (RBAC, API server) reconciles nothing, and says so.
   */
  readiness(): string | undefined {
    const controllers = this.controllers
    if (controllers !== undefined && !controllers.cachesSynced) return 'leading, but the caches have not synced: can the operator list and watch everything it reconciles?'
    return undefined
  }

  private lead(): void {
    this.metrics.isLeader.set(1)
    const controllers = new Controllers(
      {
        namespace: this.init.namespace,
        image: this.init.image,
        resyncIntervalMs: this.init.resyncIntervalMs ?? 300_000,
        watchTimeoutSeconds: this.init.watchTimeoutSeconds ?? 300,
        queue: { concurrency: this.init.concurrency, maxKeys: this.init.maxQueuedKeys, backoffBaseMs: this.init.backoffBaseMs, backoffMaxMs: this.init.backoffMaxMs },
        usage: { intervalMs: this.init.usagePollIntervalMs },
        gc: this.init.gc === undefined ? undefined : { runner: this.init.gc, checkIntervalMs: this.init.gcCheckIntervalMs },
      },
      {
        kube: this.kube,
        kubeConfig: this.components.kubeConfig,
        logger: this.components.logger,
        metrics: this.metrics,
        events: new EventRecorder(this.kube, this.init.namespace, this.init.identity),
        now: this.components.now ?? Date.now,
        statsDialer: this.components.statsDialer,
      },
    )
    this.controllers = controllers
    // A term's start waits for the previous term's stop, so two never run at once.
    this.transition = this.transition.then(() => controllers.start()).catch((err: unknown) => this.components.logger.error({ err }, 'controllers failed to start'))
  }

  private follow(): void {
    this.metrics.isLeader.set(0)
    const controllers = this.controllers
    this.controllers = undefined
    if (controllers === undefined) return
    const stopping = controllers.stop()
    this.transition = Promise.all([this.transition, stopping]).then(() => undefined)
  }
}
