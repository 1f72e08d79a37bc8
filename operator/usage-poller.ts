/**
 * Asks every ready storage-node pod for its allocation, used bytes, mesh peer
 * id and scrub and repair counters (the
 * ShardService Stats call, authenticated with the block store's cluster token)
 * and keeps the latest answer per node. The BlockStore reconciler weights
 * members and sums status capacity and usage from these reports; a changed
 * report enqueues the block store. Why the operator asks rather than the
 * storage node writing Node annotations: docs/adr/0015-cluster-credentials.md.
 */
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import { ShardClient } from '../storage-node/shard-client.js'
import type { RepairStats, ScrubStats } from '../storage-node/shard-store.js'
import type { WireStatsResponse } from '../storage-node/proto.js'
import { BLOCKSTORE_LABEL, GRPC_PORT, ownedNames } from './constants.js'
import type { Caches } from './context.js'
import type { KubeClient } from './kube.js'
import { podIsReady } from './membership.js'
import { jsonEqual } from './status.js'
import type { PodObject } from './types.js'

/** One storage node's answer. */
export interface UsageReport {
  capacityBytes: number
  usedBytes: number
  /** The node's libp2p peer id; absent when it runs no mesh. */
  peerId?: string
  scrub?: ScrubStats
  repair?: RepairStats
}

/** What the reconciler reads: the latest report per node of a block store. */
export interface UsageReports {
  reports(blockStore: string): ReadonlyMap<string, UsageReport>
}

export interface UsagePollerInit {
  namespace: string
  /** Pause between polling rounds. @default 30000 */
  intervalMs?: number
  /** Deadline of each Stats call. @default 5000 */
  deadlineMs?: number
  /** Stats calls in flight at once. @default 16 */
  concurrency?: number
  /** Port the storage nodes serve gRPC on. @default 7700 */
  grpcPort?: number
}

export interface UsagePollerComponents {
  kube: KubeClient
  caches: Caches
  logger: Logger
  /** Called with a block store whose reports changed. */
  onChange: (blockStore: string) => void
}

/** Dials one storage node; a seam so tests can count calls. */
export type StatsDialer = (address: string, token: string, deadlineMs: number) => Promise<UsageReport>

async function dialStats(address: string, token: string, deadlineMs: number): Promise<UsageReport> {
  const client = new ShardClient({ address, token, deadlineMs, maxMessageBytes: 1024 * 1024 })
  try {
    return reportOf((await client.stats()) as WireStatsResponse)
  } finally {
    client.close()
  }
}

/**
 * The operator's view of one Stats answer. The wire fills absent fields with
 * defaults (an empty peer id, null messages): those mean "not running".
 */
export function reportOf(stats: WireStatsResponse): UsageReport {
  const report: UsageReport = { capacityBytes: stats.capacityBytes ?? 0, usedBytes: stats.usedBytes ?? 0 }
  if (typeof stats.peerId === 'string' && stats.peerId !== '') report.peerId = stats.peerId
  if (stats.scrub !== undefined && stats.scrub !== null) report.scrub = { ...stats.scrub }
  if (stats.repair !== undefined && stats.repair !== null) report.repair = { ...stats.repair }
  return report
}

export class UsagePoller implements Startable, UsageReports {
  private readonly byBlockStore = new Map<string, Map<string, UsageReport>>()
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = false
  private readonly options: Required<Omit<UsagePollerInit, 'namespace'>>

  constructor(
    private readonly init: UsagePollerInit,
    private readonly components: UsagePollerComponents,
    private readonly dial: StatsDialer = dialStats,
  ) {
    this.options = { intervalMs: init.intervalMs ?? 30_000, deadlineMs: init.deadlineMs ?? 5000, concurrency: init.concurrency ?? 16, grpcPort: init.grpcPort ?? GRPC_PORT }
  }

  reports(blockStore: string): ReadonlyMap<string, UsageReport> {
    return this.byBlockStore.get(blockStore) ?? new Map()
  }

  async start(): Promise<void> {
    this.schedule(0)
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.running = this.pollAll()
        .catch((err: unknown) => this.components.logger.warn({ err }, 'usage poll failed'))
        .finally(() => {
          this.running = undefined
          this.schedule(this.options.intervalMs)
        })
    }, delayMs)
    this.timer.unref()
  }

  /** One round over every block store; resolves when every call answered or timed out. */
  async pollAll(): Promise<void> {
    const names = new Set(this.components.caches.blockStores.list().map((bs) => bs.metadata.name))
    for (const name of this.byBlockStore.keys()) if (!names.has(name)) this.byBlockStore.delete(name)
    for (const name of names) {
      if (this.stopped) return
      await this.pollBlockStore(name)
    }
  }

  private async pollBlockStore(blockStore: string): Promise<void> {
    const token = await this.readToken(blockStore)
    if (token === undefined) return
    const pods = this.components.caches.pods.list().filter((p) => p.metadata.labels?.[BLOCKSTORE_LABEL] === blockStore && podIsReady(p))
    const nodes = new Set(this.components.caches.nodes.list().map((n) => n.metadata.name))
    const reports = this.byBlockStore.get(blockStore) ?? new Map<string, UsageReport>()
    // Reports of nodes that left the cluster go; a node that did not answer keeps its last report (its allocation is fixed at its start).
    for (const node of reports.keys()) if (!nodes.has(node)) reports.delete(node)
    let changed = false
    const queue = [...pods]
    const worker = async (): Promise<void> => {
      for (let pod = queue.shift(); pod !== undefined; pod = queue.shift()) {
        const report = await this.ask(pod, token)
        const node = pod.spec?.nodeName as string
        const old = reports.get(node)
        if (report === undefined || jsonEqual(old, report)) continue
        reports.set(node, report)
        changed = true
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, queue.length) }, worker))
    this.byBlockStore.set(blockStore, reports)
    if (changed) this.components.onChange(blockStore)
  }

  private async ask(pod: PodObject, token: string): Promise<UsageReport | undefined> {
    const ip = pod.status?.podIP as string
    const address = `${ip.includes(':') ? `[${ip}]` : ip}:${this.options.grpcPort}`
    try {
      const report = await this.dial(address, token, this.options.deadlineMs)
      // A node that predates capacity reporting answers 0: no report rather than a zero weight.
      return report.capacityBytes > 0 ? report : undefined
    } catch (err) {
      this.components.logger.info({ pod: pod.metadata.name, address, error: (err as Error).name, reason: (err as Error).message }, 'storage node did not report usage')
      return undefined
    }
  }

  private async readToken(blockStore: string): Promise<string | undefined> {
    const name = ownedNames(blockStore).secret
    const secret = await this.components.kube.readOptional(`get secret ${name}`, () => this.components.kube.core.readNamespacedSecret({ name, namespace: this.init.namespace }))
    const encoded = secret?.data?.token
    return encoded === undefined || encoded === '' ? undefined : Buffer.from(encoded, 'base64').toString('utf8')
  }
}
