/**
 * The scrubber: re-reads every shard of the local store at a set pace, so rot
 * is found while enough healthy shards remain to rebuild it. The store does
 * the verification (header and payload CRC32C) and flags a bad shard in its
 * index; a flagged shard is never served again and is reported absent, which
 * is how repair learns about it.
 */
import { join } from 'node:path'
import type { Registry } from 'prom-client'
import { CairnError, InvalidArgumentError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { ShardCorruptError } from '../../core/shard.js'
import type { SegmentShardStore } from '../segment-store.js'
import { PageTokenError, ShardNotFoundError, type ShardInfo, type ScrubStats } from '../shard-store.js'
import { counterOn, gaugeOn } from './metrics-util.js'
import { PassAbortedError, systemClock, throwIfAborted, TokenBucket, type PaceClock } from './pacing.js'
import { PassLoop } from './pass-loop.js'
import { hasCounters, readStateFile, StateFileError, writeStateFile } from './state-file.js'

export interface ScrubberInit {
  /** Read pace; Infinity for unpaced. */
  bytesPerSecond: number
  /** Pause between the end of one pass and the start of the next; 0 runs no background passes (runPass only). */
  intervalMs: number
  /** Shards listed, read and checkpointed at a time. @default 64 */
  pageSize?: number
  /** Where `scrub-state.json` lives. @default the store's data directory */
  stateDir?: string
}

export interface ScrubberComponents {
  store: SegmentShardStore
  logger: Logger
  registry: Registry
  /** @default the system clock */
  clock?: PaceClock
}

/** What one pass found. A resumed pass reports the whole pass, the part before the restart included. */
export interface ScrubPassReport {
  scrubbedShards: number
  scrubbedBytes: number
  /** Shards this pass found bad (now flagged corrupt in the store). */
  badShards: number
  /** Shards that could not be read (I/O errors); they are retried next pass. */
  unreadableShards: number
  /** Shards already flagged corrupt before this pass reached them (waiting for repair). */
  knownCorruptShards: number
  /** The pass continued from a cursor saved by an earlier process or an aborted pass. */
  resumed: boolean
  /** False when the pass was aborted; the next one continues from its cursor. */
  completed: boolean
}

type PassCounters = Omit<ScrubPassReport, 'resumed' | 'completed'>

interface ScrubState {
  version: 1
  /** Where the running pass continues: the store's token for the next page; null at a pass start. */
  pageToken: string | null
  pass: PassCounters
  totals: ScrubStats
}

const PASS_KEYS = ['scrubbedShards', 'scrubbedBytes', 'badShards', 'unreadableShards', 'knownCorruptShards'] as const
const TOTAL_KEYS = ['scrubbedShards', 'scrubbedBytes', 'badShards', 'passesCompleted', 'lastPassCompletedUnixMs'] as const

export class Scrubber implements Startable {
  readonly #store: SegmentShardStore
  readonly #logger: Logger
  readonly #clock: PaceClock
  readonly #bucket: TokenBucket
  readonly #intervalMs: number
  readonly #pageSize: number
  readonly #statePath: string
  readonly #metrics: ReturnType<typeof scrubMetrics>
  #state: ScrubState = freshState()
  #loaded = false
  readonly #passes: PassLoop<ScrubPassReport>

  constructor(init: ScrubberInit, components: ScrubberComponents) {
    if (!Number.isSafeInteger(init.intervalMs) || init.intervalMs < 0) throw new InvalidArgumentError(`intervalMs must be an integer >= 0, got ${init.intervalMs}`)
    const pageSize = init.pageSize ?? 64
    if (!Number.isSafeInteger(pageSize) || pageSize < 1) throw new InvalidArgumentError(`pageSize must be a positive integer, got ${pageSize}`)
    this.#store = components.store
    this.#logger = components.logger
    this.#clock = components.clock ?? systemClock
    this.#bucket = new TokenBucket({ bytesPerSecond: init.bytesPerSecond }, this.#clock)
    this.#intervalMs = init.intervalMs
    this.#pageSize = pageSize
    this.#statePath = join(init.stateDir ?? components.store.init.dataDir, 'scrub-state.json')
    this.#metrics = scrubMetrics(components.registry)
    this.#passes = new PassLoop({ intervalMs: this.#intervalMs, what: 'scrub' }, { clock: this.#clock, logger: this.#logger }, (signal) => this.#pass(signal))
  }

  async start(): Promise<void> {
    if (this.#passes.started) return
    await this.#load()
    this.#passes.start()
  }

  /** Aborts the pass in progress (its cursor is saved) and waits for it. */
  stop(): Promise<void> {
    return this.#passes.stop()
  }

  stats(): ScrubStats {
    return { ...this.#state.totals }
  }

  /**
   * Runs one pass now, after any pass in progress: from the saved cursor if a
   * pass was cut short, else over the whole store.
   */
  runPass(signal?: AbortSignal): Promise<ScrubPassReport> {
    return this.#passes.run(signal)
  }

  async #load(): Promise<void> {
    if (this.#loaded) return
    this.#loaded = true
    try {
      this.#state = (await readStateFile(this.#statePath, checkState)) ?? freshState()
    } catch (err) {
      if (!(err instanceof StateFileError)) throw err
      // Losing a cursor costs one re-read of the store, never data.
      this.#logger.warn({ err, path: this.#statePath }, 'scrub state unreadable; starting a new pass')
      this.#state = freshState()
    }
  }

  async #pass(combined: AbortSignal | undefined): Promise<ScrubPassReport> {
    await this.#load()
    const resumed = this.#state.pageToken !== null
    try {
      for (;;) {
        throwIfAborted(combined)
        const page = await this.#listPage()
        for (const info of page.shards) await this.#scrubOne(info, combined)
        this.#state.pageToken = page.nextPageToken ?? null
        if (page.nextPageToken === undefined) break
        await writeStateFile(this.#statePath, this.#state)
      }
    } catch (err) {
      if (!(err instanceof PassAbortedError)) throw err
      await writeStateFile(this.#statePath, this.#state)
      return { ...this.#state.pass, resumed, completed: false }
    }
    return this.#finishPass(resumed)
  }

  async #listPage(): Promise<{ shards: ShardInfo[]; nextPageToken?: string }> {
    const token = this.#state.pageToken ?? undefined
    try {
      return await this.#store.listShards({ pageSize: this.#pageSize, ...(token === undefined ? {} : { pageToken: token }) })
    } catch (err) {
      if (!(err instanceof PageTokenError) || token === undefined) throw err
      this.#logger.warn({ err }, 'saved scrub cursor refused by the store; restarting the pass')
      this.#state.pageToken = null
      return this.#store.listShards({ pageSize: this.#pageSize })
    }
  }

  /** Reads one shard through the store, which verifies it and flags it when bad. */
  async #scrubOne(info: ShardInfo, signal: AbortSignal | undefined): Promise<void> {
    const pass = this.#state.pass
    if (info.corrupt) {
      pass.knownCorruptShards += 1
      return
    }
    await this.#bucket.take(info.sizeBytes, signal)
    try {
      await this.#store.getShard(info.address)
    } catch (err) {
      if (err instanceof ShardNotFoundError) return // deleted since the listing (GC, rebalance): nothing to check
      if (err instanceof ShardCorruptError) {
        pass.badShards += 1
        this.#state.totals.badShards += 1
        this.#metrics.bad.inc()
        this.#logger.warn({ err, sizeBytes: info.sizeBytes }, 'scrub found a bad shard')
      } else if (err instanceof CairnError) {
        pass.unreadableShards += 1
        this.#metrics.unreadable.inc()
        this.#logger.warn({ err }, 'scrub could not read a shard')
      } else {
        throw err
      }
    }
    pass.scrubbedShards += 1
    pass.scrubbedBytes += info.sizeBytes
    this.#state.totals.scrubbedShards += 1
    this.#state.totals.scrubbedBytes += info.sizeBytes
    this.#metrics.shards.inc()
    this.#metrics.bytes.inc(info.sizeBytes)
  }

  async #finishPass(resumed: boolean): Promise<ScrubPassReport> {
    const report: ScrubPassReport = { ...this.#state.pass, resumed, completed: true }
    const nowMs = this.#clock.nowMs()
    this.#state.totals.passesCompleted += 1
    this.#state.totals.lastPassCompletedUnixMs = nowMs
    this.#state.pageToken = null
    this.#state.pass = emptyPass()
    await writeStateFile(this.#statePath, this.#state)
    this.#metrics.lastPass.set(nowMs / 1000)
    this.#logger.info(report, 'scrub pass completed')
    return report
  }
}

function scrubMetrics(registry: Registry) {
  return {
    shards: counterOn(registry, 'cairn_scrub_shards_total', 'Shards re-read and verified by the scrubber.'),
    bytes: counterOn(registry, 'cairn_scrub_bytes_total', 'Shard bytes re-read by the scrubber.'),
    bad: counterOn(registry, 'cairn_scrub_bad_shards_total', 'Shards the scrubber found bad (flagged corrupt for repair).'),
    unreadable: counterOn(registry, 'cairn_scrub_unreadable_shards_total', 'Shards the scrubber could not read (I/O errors).'),
    lastPass: gaugeOn(registry, 'cairn_scrub_last_pass_completed_timestamp_seconds', 'Unix time the last full scrub pass completed.'),
  }
}

function emptyPass(): PassCounters {
  return { scrubbedShards: 0, scrubbedBytes: 0, badShards: 0, unreadableShards: 0, knownCorruptShards: 0 }
}

function freshState(): ScrubState {
  return {
    version: 1,
    pageToken: null,
    pass: emptyPass(),
    totals: { scrubbedShards: 0, scrubbedBytes: 0, badShards: 0, passesCompleted: 0, lastPassCompletedUnixMs: 0 },
  }
}

function checkState(value: unknown): ScrubState | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const v = value as Record<string, unknown>
  if (v.version !== 1 || !(v.pageToken === null || typeof v.pageToken === 'string')) return undefined
  const { pass: p, totals: t } = v
  if (!hasCounters(p, PASS_KEYS) || !hasCounters(t, TOTAL_KEYS)) return undefined
  const pass = Object.fromEntries(PASS_KEYS.map((k) => [k, p[k]])) as PassCounters
  const totals = Object.fromEntries(TOTAL_KEYS.map((k) => [k, t[k]])) as unknown as ScrubStats
  return { version: 1, pageToken: v.pageToken, pass, totals }
}
