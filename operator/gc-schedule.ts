/**
 * Garbage collection on a schedule: while this process leads, each BlockStore
 * is collected every `spec.durability.gcIntervalSeconds`, never twice at once,
 * and the outcome goes to its `status.gc`, to metrics and (on failure) to an
 * Event. The collector itself (mark from heads, snapshots and pins; sweep on
 * the storage nodes) lives in engine/gc and is passed in as a {@link GcRunner}.
 *
 * When a run is due is read from status (`lastRunTime`, else the BlockStore's
 * creation): a new leader therefore neither runs early nor skips a run.
 */
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import { REASON } from './constants.js'
import type { Caches } from './context.js'
import type { EventRecorder } from './events.js'
import type { KubeClient } from './kube.js'
import { durabilityOf } from './membership.js'
import type { OperatorMetrics } from './metrics.js'
import { updateStatus } from './status.js'
import type { BlockStoreObject } from './types.js'

/** What one collection reports. */
export interface GcReport {
  markedChunks: number
  sweptShards: number
  freedBytes: number
  durationMs: number
  /** Journal replicas of deleted volumes (or replaced ones) deleted. */
  collectedJournals?: number
}

/** Runs one garbage collection of a block store (structural: engine/gc implements it). */
export interface GcRunner {
  run(blockStore: string, options: { gracePeriodMs: number; signal?: AbortSignal }): Promise<GcReport>
}

export interface GcSchedulerInit {
  /** How often due block stores are looked for. @default 30000 */
  checkIntervalMs?: number
}

export interface GcSchedulerComponents {
  runner: GcRunner
  kube: KubeClient
  caches: Pick<Caches, 'blockStores'>
  events: EventRecorder
  logger: Logger
  metrics: OperatorMetrics
  /** Unix ms. */
  now: () => number
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export class GcScheduler implements Startable {
  private readonly running = new Map<string, Promise<void>>()
  private readonly abort = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly checkIntervalMs: number

  constructor(
    init: GcSchedulerInit,
    private readonly components: GcSchedulerComponents,
  ) {
    this.checkIntervalMs = init.checkIntervalMs ?? 30_000
  }

  async start(): Promise<void> {
    this.tick()
  }

  /** Aborts running collections and waits for them to settle. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.abort.abort()
    await Promise.all(this.running.values())
  }

  private tick(): void {
    if (this.stopped) return
    this.runDue()
    this.timer = setTimeout(() => this.tick(), this.checkIntervalMs)
    this.timer.unref()
  }

  /** Names of the block stores whose collection is running. */
  inFlight(): string[] {
    return [...this.running.keys()]
  }

  /** Starts a collection of every block store that is due and not already being collected; returns the names started. */
  runDue(): string[] {
    if (this.stopped) return []
    const started: string[] = []
    for (const bs of this.components.caches.blockStores.list()) {
      const name = bs.metadata.name
      if (bs.metadata.deletionTimestamp !== undefined || this.running.has(name) || !this.isDue(bs)) continue
      const run = this.runOne(bs).finally(() => this.running.delete(name))
      this.running.set(name, run)
      started.push(name)
    }
    return started
  }

  private isDue(bs: BlockStoreObject): boolean {
    const last = Date.parse(bs.status?.gc?.lastRunTime ?? bs.metadata.creationTimestamp ?? '')
    const intervalMs = durabilityOf(bs.spec).gcIntervalSeconds * 1000
    return Number.isNaN(last) || this.components.now() >= last + intervalMs
  }

  private async runOne(bs: BlockStoreObject): Promise<void> {
    const { runner, metrics, logger, now } = this.components
    const name = bs.metadata.name
    const startedMs = now()
    const gracePeriodMs = durabilityOf(bs.spec).gcGracePeriodSeconds * 1000
    let report: GcReport | undefined
    let failure: Error | undefined
    try {
      report = await runner.run(name, { gracePeriodMs, signal: this.abort.signal })
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err))
    }
    const outcome = report === undefined ? 'failed' : 'succeeded'
    metrics.gcRuns.inc({ outcome })
    if (report !== undefined) {
      metrics.gcFreedBytes.inc(report.freedBytes)
      metrics.gcDuration.observe(report.durationMs / 1000)
      logger.info({ blockStore: name, ...report }, 'garbage collection done')
    } else {
      logger.warn({ blockStore: name, err: failure }, 'garbage collection failed; next try after the interval')
    }
    try {
      await this.record(bs, startedMs, report, failure)
    } catch (err) {
      // Losing leadership mid-run makes this write fail; the next leader reads the schedule from what was stored.
      logger.warn({ blockStore: name, err }, 'could not record the garbage collection outcome')
    }
  }

  private async record(bs: BlockStoreObject, startedMs: number, report: GcReport | undefined, failure: Error | undefined): Promise<void> {
    const { kube, events } = this.components
    const name = bs.metadata.name
    const written = await updateStatus<BlockStoreObject>(kube, 'BlockStore', name, (fresh) => {
      if (fresh.metadata.uid !== bs.metadata.uid) return undefined
      const gc = report === undefined
        ? { ...fresh.status?.gc, lastRunTime: isoSeconds(startedMs), lastOutcome: 'Failed' as const }
        : { lastRunTime: isoSeconds(startedMs), lastFreedBytes: report.freedBytes, lastOutcome: 'Succeeded' as const }
      return { ...fresh.status, gc }
    })
    if (written === undefined) return
    if (report === undefined) {
      await events.record(written, 'BlockStore', 'Warning', REASON.GarbageCollectionFailed, `garbage collection failed: ${failure?.name ?? 'Error'}: ${failure?.message ?? ''}`)
    } else {
      await events.record(written, 'BlockStore', 'Normal', REASON.GarbageCollected, `garbage collection freed ${report.freedBytes} bytes (${report.sweptShards} shards swept, ${report.markedChunks} chunks marked, ${report.collectedJournals ?? 0} journal replicas collected) in ${report.durationMs} ms`)
    }
  }
}
