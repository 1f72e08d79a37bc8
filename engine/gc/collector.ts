/**
 * GarbageCollector: one mark-and-sweep of a block store.
 *
 * 1. The mark starts: `markStart` is read before any root, and the sweep cutoff
 *    is `markStart − gracePeriodMs`.
 * 2. Roots (volume heads, snapshot roots, pins) are read and walked; then read
 *    again and any root not seen yet is walked, until a round finds nothing new
 *    (bounded). Heads written while the mark ran are therefore marked too.
 * 3. The Bloom filter goes to every storage node not Down in the current map;
 *    each deletes unmarked shards put before the cutoff.
 * 4. Every volume that exists is listed (after the mark started), and each node is
 *    sent the uids whose journal it must keep: every volume attached, awaiting
 *    recovery or without recorded replicas, else those that record it as a replica. It deletes the other
 *    journals that nothing changed since before the cutoff: deleted volumes' journals
 *    and tombstones, and replicas an engine replaced (a detached volume's next attach
 *    opens only its recorded ones). A volume created, attached or re-replicated after
 *    the listing only has journal changes after the cutoff, so nothing of it is taken.
 *
 * Why nothing live is swept (docs/adr/0021): a chunk is live once a head or
 * snapshot names it. An engine puts a flush's chunks and pages first and writes
 * the head after, so the only chunks not yet named by a head the mark could see
 * are those of a flush whose head is written after the mark's last root read.
 * Their shards were put (or, for a deduplicated chunk, re-put: a put refreshes
 * the last-put time) during that flush, so they are younger than the cutoff as
 * long as the grace period exceeds the longest flush (put to head write) plus
 * the clock skew between this process and the storage nodes. The mark aborts on
 * any unreadable page: the sweep never runs on an incomplete mark.
 */
import { Registry } from 'prom-client'
import type { ControlPlane } from '../../control-plane/types.js'
import { CairnError, InvalidArgumentError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import type { ClusterMember } from '../../core/cluster-map.js'
import { CodecPool } from '../../core/workers/pool.js'
import type { ChannelCredentials } from '@grpc/grpc-js'
import { ShardClient } from '../../storage-node/shard-client.js'
import { JournalClient, type JournalCollectRequest } from '../../storage-node/journal/journal-client.js'
import type { CollectResult as JournalCollectResult } from '../../storage-node/journal/journal-store.js'
import { COLLECT_LIVE_UIDS_MAX } from '../../storage-node/journal/validate.js'
import type { SweepRequest, SweepResult } from '../../storage-node/sweep.js'
import { ErasureChunkStore } from '../chunks/chunk-store.js'
import { ControlPlaneMaps } from '../host/cluster-maps.js'
import { Marker, type MarkResult } from './mark.js'
import { createGcMetrics, type GcMetrics } from './metrics.js'
import { collectRoots } from './roots.js'

export interface GcRunOptions {
  /** Shards put after `markStart − gracePeriodMs` are never swept. */
  gracePeriodMs: number
  /** Count what would be swept, delete nothing. @default false */
  dryRun?: boolean
  signal?: AbortSignal
}

/** What one run reports; the first four fields are what the operator consumes. */
export interface GcReport {
  markedChunks: number
  sweptShards: number
  freedBytes: number
  durationMs: number
  markedPages: number
  scannedShards: number
  /** Unmarked shards kept because they were younger than the cutoff. */
  youngShards: number
  cutoffUnixMs: number
  dryRun: boolean
  /** Journal replicas deleted, of deleted volumes or replaced ones (dry run: that would be), and the bytes of their files. */
  collectedJournals: number
  journalFreedBytes: number
  /** Each swept node's own counts. */
  nodes: ({ id: string; journals: JournalCollectResult } & SweepResult)[]
}

/** How the collector reaches a storage node; the default is a ShardClient. */
export type SweepNode = (member: ClusterMember, request: SweepRequest) => Promise<SweepResult>

/** A volume as journal collection sees it: its uid, and whether a node must keep its journal replica. */
interface JournaledVolume {
  uid: string
  keptOn(memberId: string): boolean
}

export interface GarbageCollectorInit {
  /** @default 1e-4 */
  falsePositiveRate?: number
  /** Largest filter sent to the nodes (it must fit in one gRPC message to them). @default 25165824 (24 MiB, about 10 million chunks) */
  filterBytesMax?: number
  /** Root re-reads after the first walk, each walking roots not seen yet. @default 4 */
  rootRoundsMax?: number
  /** Deadline of one node's sweep. @default 600000 */
  sweepDeadlineMs?: number
  /** Cluster token for the storage nodes. @default none */
  token?: string
  /** @default insecure (loopback) */
  credentials?: ChannelCredentials
  /** Bytes of chunk CIDs held between walk and filter build. @default 268435456 */
  arenaBytesMax?: number
}

export interface GarbageCollectorComponents {
  controlPlane: ControlPlane
  logger: Logger
  /** Where the cairn_gc_* metrics go. @default a private registry */
  registry?: Registry
  /** @default Date.now */
  now?: () => number
  /** @default gRPC Sweep through a ShardClient */
  sweepNode?: SweepNode
  /** The cluster token of a block store's storage nodes (in a cluster: its Secret). @default `init.token` */
  tokenFor?: (blockStore: string) => Promise<string | undefined>
}

/** A collection of this block store is already running in this process. */
export class GcBusyError extends CairnError {
  override readonly name = 'GcBusyError'
  readonly kind = 'resource-exhausted'
}

/** The mark is too large for one filter message; nothing was swept. */
export class GcFilterTooLargeError extends CairnError {
  override readonly name = 'GcFilterTooLargeError'
  readonly kind = 'resource-exhausted'
}

/** Some storage nodes failed their sweep; the others swept. `report` has what was done. */
export class GcSweepError extends CairnError {
  override readonly name = 'GcSweepError'
  readonly kind = 'unavailable'
  constructor(
    message: string,
    readonly report: GcReport,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

const NOTHING_COLLECTED: JournalCollectResult = { scannedJournals: 0, collectedJournals: 0, freedBytes: 0, youngJournals: 0, busyJournals: 0 }

/** One node's part of a run: its sweep's counts and its journal collection's. */
type NodeOutcome = SweepResult & { journals: JournalCollectResult }

/** What one run holds open: the block store's maps, a chunk store per policy, the token. */
interface RunResources {
  maps: ControlPlaneMaps
  stores: Map<string, Promise<ErasureChunkStore>>
  token: string | undefined
}

export class GarbageCollector implements Startable {
  readonly #init: GarbageCollectorInit
  readonly #c: GarbageCollectorComponents
  readonly #codec: CodecPool
  readonly #metrics: GcMetrics
  readonly #running = new Set<string>()
  readonly #now: () => number

  constructor(init: GarbageCollectorInit, components: GarbageCollectorComponents) {
    this.#init = init
    this.#c = components
    this.#now = components.now ?? Date.now
    // Pages are small and few: one decoding thread is plenty, and leaves the cores to the data path.
    this.#codec = new CodecPool({ workers: 1 }, { logger: components.logger.child({ component: 'gc-codec' }) })
    this.#metrics = createGcMetrics(components.registry ?? new Registry())
  }

  async start(): Promise<void> {
    await this.#codec.start()
  }

  async stop(): Promise<void> {
    await this.#codec.stop()
  }

  /** One mark and sweep of `blockStore`; see the module comment. */
  async run(blockStore: string, options: GcRunOptions): Promise<GcReport> {
    const grace = options.gracePeriodMs
    if (!Number.isSafeInteger(grace) || grace < 0) throw new InvalidArgumentError(`gracePeriodMs must be a non-negative integer, got ${grace}`)
    if (this.#running.has(blockStore)) throw new GcBusyError(`garbage collection of ${blockStore} is already running`)
    this.#running.add(blockStore)
    const labels = { block_store: blockStore }
    try {
      const report = await this.#collect(blockStore, options)
      this.#metrics.runs.inc({ ...labels, outcome: 'succeeded' })
      this.#metrics.lastCompletion.set(labels, this.#now() / 1000)
      return report
    } catch (err) {
      this.#metrics.runs.inc({ ...labels, outcome: 'failed' })
      throw err
    } finally {
      this.#running.delete(blockStore)
    }
  }

  async #collect(blockStore: string, options: GcRunOptions): Promise<GcReport> {
    const log = this.#c.logger.child({ blockStore })
    const labels = { block_store: blockStore }
    const markStart = this.#now()
    const cutoffUnixMs = markStart - options.gracePeriodMs
    const token = this.#c.tokenFor === undefined ? this.#init.token : await this.#c.tokenFor(blockStore)
    const maps = new ControlPlaneMaps({ blockStore, refreshIntervalMs: 60_000 }, { controlPlane: this.#c.controlPlane, logger: log })
    await maps.start()
    const stores = new Map<string, Promise<ErasureChunkStore>>()
    try {
      const mark = await this.#mark(blockStore, { maps, stores, token }, options.signal)
      const markDoneMs = this.#now()
      this.#metrics.markSeconds.observe(labels, (markDoneMs - markStart) / 1000)
      this.#metrics.markedChunks.set(labels, mark.markedChunks)
      log.info({ markedChunks: mark.markedChunks, markedPages: mark.markedPages, filterBytes: mark.filter.bits.byteLength }, 'mark done')
      const request: SweepRequest = { marked: mark.filter.parts(), olderThanUnixMs: cutoffUnixMs, dryRun: options.dryRun ?? false }
      // Listed after markStart: see step 4 of the module comment.
      const live = await this.#journaledVolumes()
      const members = maps.current().members.filter((m) => m.state !== 'down')
      const journalRequests = members.map((m): JournalCollectRequest | undefined => {
        const uids = live.filter((v) => v.keptOn(m.id)).map((v) => v.uid)
        if (uids.length <= COLLECT_LIVE_UIDS_MAX) return { liveVolumeUids: uids, olderThanUnixMs: cutoffUnixMs, dryRun: request.dryRun }
        log.warn({ member: m.id, volumes: uids.length, max: COLLECT_LIVE_UIDS_MAX }, 'too many live volumes to send in one request: no journal is collected on this node this run')
        return undefined
      })
      const outcomes = await Promise.allSettled(members.map((m, i) => this.#cleanNode(m, request, journalRequests[i], token)))
      this.#metrics.sweepSeconds.observe(labels, (this.#now() - markDoneMs) / 1000)
      const report = this.#report(mark, members, outcomes, { cutoffUnixMs, dryRun: request.dryRun, startMs: markStart })
      if (!request.dryRun) {
        this.#metrics.freedBytes.inc(labels, report.freedBytes)
        this.#metrics.sweptShards.inc(labels, report.sweptShards)
        this.#metrics.collectedJournals.inc(labels, report.collectedJournals)
      }
      const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [{ id: members[i]!.id, err: o.reason as unknown }] : []))
      if (failed.length > 0) {
        throw new GcSweepError(`sweep failed on ${failed.map((f) => f.id).join(', ')}`, report, { cause: failed[0]!.err })
      }
      log.info({ sweptShards: report.sweptShards, freedBytes: report.freedBytes, collectedJournals: report.collectedJournals, dryRun: report.dryRun }, 'sweep done')
      return report
    } finally {
      for (const s of stores.values()) await s.then((store) => store.stop()).catch(() => undefined)
      await maps.stop()
    }
  }

  async #mark(blockStore: string, run: RunResources, signal?: AbortSignal): Promise<MarkResult> {
    const { stores } = run
    const cp = this.#c.controlPlane
    let policies: string[] = []
    const reader = (policy: string): Promise<ErasureChunkStore> => {
      let store = stores.get(policy)
      if (store === undefined) {
        store = this.#chunkStore(policy, run)
        stores.set(policy, store)
      }
      return store
    }
    const marker = new Marker(reader, () => policies, { signal, ...(this.#init.arenaBytesMax === undefined ? {} : { arenaBytesMax: this.#init.arenaBytesMax }) })
    for (let round = 0; round <= (this.#init.rootRoundsMax ?? 4); round++) {
      const roots = await collectRoots(cp, blockStore)
      policies = roots.policies.length > 0 ? roots.policies : (await cp.listStoragePolicies({ limit: 1000 })).items.map((p) => p.name)
      marker.markChunks(roots.chunks)
      const fresh = await marker.walk(roots.manifests)
      if (round > 0 && fresh === 0) break
    }
    const mark = await marker.build({ falsePositiveRate: this.#init.falsePositiveRate ?? 1e-4 })
    const max = this.#init.filterBytesMax ?? 24 * 1024 * 1024
    if (mark.filter.bits.byteLength > max) {
      throw new GcFilterTooLargeError(`the mark of ${mark.markedChunks} chunks needs a ${mark.filter.bits.byteLength}-byte filter; at most ${max} bytes go to a node`)
    }
    return mark
  }

  async #chunkStore(policyName: string, run: RunResources): Promise<ErasureChunkStore> {
    const policy = await this.#c.controlPlane.getStoragePolicy(policyName)
    const store = new ErasureChunkStore(
      {
        policy: { dataShards: policy.dataShards, parityShards: policy.parityShards, hash: policy.hash, chunkSizeBytes: policy.chunkSizeBytes },
        // Each page is read once per run: a cache would only hold memory.
        cacheMaxBytes: 4 * 1024 * 1024,
        clients: { ...(run.token === undefined ? {} : { token: run.token }), ...(this.#init.credentials === undefined ? {} : { credentials: this.#init.credentials }) },
      },
      // A private registry: chunk-store metrics belong to engines, and a run must not re-register them.
      { maps: run.maps, codec: this.#codec, registry: new Registry(), logger: this.#c.logger.child({ component: 'gc-chunks', policy: policyName }) },
    )
    await store.start()
    return store
  }

  /**
   * Every volume of every block store (a journal's node does not know its block store), with
   * the nodes whose replica of its journal must stay: all of them while it is attached (its
   * engine may have replaced replicas it has not recorded yet), while its head awaits
   * recovery (a crashed engine's unrecorded replicas hold the same records: redundancy until
   * the replay) or before replicas are recorded; else only the recorded ones, since the next
   * attach opens only those.
   */
  async #journaledVolumes(): Promise<JournaledVolume[]> {
    const volumes: JournaledVolume[] = []
    let token: string | undefined
    do {
      const page = await this.#c.controlPlane.listVolumes({ limit: 1000, continue: token })
      for (const v of page.items) {
        const recorded = v.status.journalReplicas
        const everywhere = v.status.attachment !== null || v.status.recoveryPending || recorded.length === 0
        volumes.push({ uid: v.uid, keptOn: everywhere ? () => true : (id) => recorded.includes(id) })
      }
      token = page.continue
    } while (token !== undefined)
    return volumes
  }

  /** One node's sweep, then its journal collection; a failure of either fails the node. */
  async #cleanNode(member: ClusterMember, sweep: SweepRequest, journals: JournalCollectRequest | undefined, token: string | undefined): Promise<NodeOutcome> {
    const swept = await this.#sweepNode(member, sweep, token)
    const collected = journals === undefined ? NOTHING_COLLECTED : await this.#collectNodeJournals(member, journals, token)
    return { ...swept, journals: collected }
  }

  async #collectNodeJournals(member: ClusterMember, request: JournalCollectRequest, token: string | undefined): Promise<JournalCollectResult> {
    const client = new JournalClient({ ...this.#connection(member, token), deadlineMs: this.#init.sweepDeadlineMs ?? 600_000 })
    try {
      return await client.collect(request)
    } finally {
      client.close()
    }
  }

  async #sweepNode(member: ClusterMember, request: SweepRequest, token: string | undefined): Promise<SweepResult> {
    if (this.#c.sweepNode !== undefined) return this.#c.sweepNode(member, request)
    const client = new ShardClient(this.#connection(member, token))
    try {
      return await client.sweep(request, { deadlineMs: this.#init.sweepDeadlineMs ?? 600_000 })
    } finally {
      client.close()
    }
  }

  /** Where and how to reach a member's gRPC services. */
  #connection(member: ClusterMember, token: string | undefined): { address: string; token?: string; credentials?: ChannelCredentials } {
    return {
      address: member.address,
      ...(token === undefined ? {} : { token }),
      ...(this.#init.credentials === undefined ? {} : { credentials: this.#init.credentials }),
    }
  }

  #report(
    mark: MarkResult,
    members: readonly ClusterMember[],
    outcomes: readonly PromiseSettledResult<NodeOutcome>[],
    run: { cutoffUnixMs: number; dryRun: boolean; startMs: number },
  ): GcReport {
    const nodes = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [{ id: members[i]!.id, ...o.value }] : []))
    const sum = (f: (r: NodeOutcome) => number): number => nodes.reduce((s, n) => s + f(n), 0)
    return {
      markedChunks: mark.markedChunks,
      sweptShards: sum((r) => r.deletedShards),
      freedBytes: sum((r) => r.freedBytes),
      durationMs: this.#now() - run.startMs,
      markedPages: mark.markedPages,
      scannedShards: sum((r) => r.scannedShards),
      youngShards: sum((r) => r.youngShards),
      collectedJournals: sum((r) => r.journals.collectedJournals),
      journalFreedBytes: sum((r) => r.journals.freedBytes),
      cutoffUnixMs: run.cutoffUnixMs,
      dryRun: run.dryRun,
      nodes,
    }
  }
}
