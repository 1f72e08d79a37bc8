/**
 * The repairer: one placement-reconcile pass at a time over this node's own
 * shards, in the store's listing order, a batch of chunks at a time (batch.ts).
 * Misplaced shards move to their target (rebalance), missing and corrupt ones
 * are rebuilt by the holder of the chunk's lowest healthy slot (repair). The
 * pass is paced by the cluster-wide cap divided among the active members, and
 * resumable: the cursor (last completed chunk) and the counters are saved
 * atomically after a batch at most every `checkpointIntervalMs`, so a
 * restarted node continues close to where it was, never from zero.
 * docs/adr/0020 records the design.
 */
import { join } from 'node:path'
import type { Registry } from 'prom-client'
import type { ClusterMapProvider } from '../../core/cluster-map.js'
import { InvalidArgumentError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import type { CodecPool } from '../../core/workers/pool.js'
import type { PeerLiveness, PeerShards } from '../mesh/types.js'
import { PageTokenError, type ListPage, type RepairStats, type ShardStore } from '../shard-store.js'
import { PassAbortedError, systemClock, throwIfAborted, TokenBucket, type PaceClock } from '../scrub/pacing.js'
import { PassLoop } from '../scrub/pass-loop.js'
import { readStateFile, StateFileError, writeStateFile } from '../scrub/state-file.js'
import { RepairBatch, type BatchTally, type ChunkGroup } from './batch.js'
import { createRebuildCodec, type RebuildCodec } from './codec.js'
import { repairMetrics, type RepairFailureReason, type RepairMetrics } from './metrics.js'
import { checkRepairState, emptyPassCounters, freshRepairState, type PassCounters, type RepairState } from './state.js'

export interface RepairerInit {
  /** Cluster-wide cap on repair and rebalance traffic; each node takes cap / active members. Infinity for unpaced. */
  bandwidthBytesPerSecond: number
  /** Pause between the end of one pass and the start of the next; 0 runs no background passes (runPass only). */
  intervalMs: number
  /** Where `repair-state.json` (cursor and counters) lives. */
  stateDir: string
  /**
   * Chunks per batch: each step of a batch is one call per peer, so larger batches
   * cost fewer calls and fsyncs per chunk (256 took about 10% less CPU than 64 in
   * `cairn bench repair`), but the cursor moves only between batches: under a slow
   * pace a large batch is a long stretch a SIGKILL redoes. @default 64
   */
  batchChunks?: number
  /**
   * A batch also ends once its chunks' local copies add up to this many bytes, which
   * bounds the shard bytes a batch holds in memory whatever the chunk size (rebuild
   * sources are about k shards per rebuilt chunk on top). @default 16777216 (16 MiB)
   */
  batchBytesMax?: number
  /**
   * The cursor is saved after a batch once this long has passed since the last
   * save (and always when a pass ends or aborts): a crash redoes at most about
   * this much work, and a fast pass does not spend its time in fsyncs. @default 1000
   */
  checkpointIntervalMs?: number
  /** Rows per page of the local listing. @default 256 */
  listPageSize?: number
  /**
   * Shards put less than this long ago are neither moved nor taken as a reason
   * to rebuild: writes in flight and map changes still propagating settle first.
   * @default 60000
   */
  settleMs?: number
  /** Most addresses per `has` call. @default 1024 */
  hasBatchMax?: number
  /** Codec jobs (of `codecBatchChunks` chunks each) in flight at once within a batch. @default 4 */
  rebuildConcurrency?: number
  /** Most shard bytes in one put to or get from a peer (stays under the mesh's and the store's batch limits). @default 1048576 (1 MiB) */
  putBatchBytesMax?: number
  /** Chunks per decode or encode job on the codec pool: one thread hop per job, not per chunk. @default 16 */
  codecBatchChunks?: number
}

export interface RepairerComponents {
  /** This node's id in the cluster map. */
  memberId: string
  maps: ClusterMapProvider
  store: ShardStore
  peers: PeerShards
  liveness: PeerLiveness
  logger: Logger
  registry: Registry
  /** The core worker pool for decode and encode. @default a codec on this thread */
  pool?: CodecPool
  /** @default the system clock */
  clock?: PaceClock
}

/** What one pass did. A resumed pass reports the whole pass, the part before the restart included. */
export interface RepairPassReport extends PassCounters {
  /** Shards skipped or failed this pass, by reason (they are retried next pass). */
  failures: Partial<Record<RepairFailureReason, number>>
  /** Chunks examined by this call (a resumed pass skips those before the cursor). */
  chunksExaminedThisRun: number
  resumed: boolean
  /** False when the pass was aborted; the next one continues from its cursor. */
  completed: boolean
}

export class Repairer implements Startable {
  readonly #c: RepairerComponents
  readonly #cap: number
  readonly #intervalMs: number
  readonly #statePath: string
  readonly #batchChunks: number
  readonly #batchBytesMax: number
  readonly #checkpointIntervalMs: number
  #lastCheckpointMs = Number.NEGATIVE_INFINITY
  readonly #listPageSize: number
  readonly #settleMs: number
  readonly #hasBatchMax: number
  readonly #rebuildConcurrency: number
  readonly #putBatchBytesMax: number
  readonly #codecBatchChunks: number
  readonly #clock: PaceClock
  readonly #bucket: TokenBucket
  readonly #metrics: RepairMetrics
  #state: RepairState = freshRepairState()
  #loaded = false
  #codec: RebuildCodec | undefined
  readonly #passes: PassLoop<RepairPassReport>

  constructor(init: RepairerInit, components: RepairerComponents) {
    this.#c = components
    this.#cap = init.bandwidthBytesPerSecond
    this.#intervalMs = init.intervalMs
    this.#batchChunks = init.batchChunks ?? 64
    this.#batchBytesMax = init.batchBytesMax ?? 16 * 1024 * 1024
    this.#checkpointIntervalMs = init.checkpointIntervalMs ?? 1000
    this.#listPageSize = init.listPageSize ?? 256
    this.#settleMs = init.settleMs ?? 60_000
    this.#hasBatchMax = init.hasBatchMax ?? 1024
    this.#rebuildConcurrency = init.rebuildConcurrency ?? 4
    this.#putBatchBytesMax = init.putBatchBytesMax ?? 1024 * 1024
    this.#codecBatchChunks = init.codecBatchChunks ?? 16
    for (const [name, v, min] of [
      ['intervalMs', this.#intervalMs, 0],
      ['batchChunks', this.#batchChunks, 1],
      ['batchBytesMax', this.#batchBytesMax, 1],
      ['checkpointIntervalMs', this.#checkpointIntervalMs, 0],
      ['listPageSize', this.#listPageSize, 1],
      ['settleMs', this.#settleMs, 0],
      ['hasBatchMax', this.#hasBatchMax, 1],
      ['rebuildConcurrency', this.#rebuildConcurrency, 1],
      ['putBatchBytesMax', this.#putBatchBytesMax, 1],
      ['codecBatchChunks', this.#codecBatchChunks, 1],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}`)
    }
    if (typeof init.stateDir !== 'string' || init.stateDir === '') throw new InvalidArgumentError('stateDir must be a directory path')
    this.#clock = components.clock ?? systemClock
    // Validates the cap; the per-node share is set at the start of each batch.
    this.#bucket = new TokenBucket({ bytesPerSecond: this.#cap }, this.#clock)
    this.#statePath = join(init.stateDir, 'repair-state.json')
    this.#metrics = repairMetrics(components.registry)
    this.#passes = new PassLoop({ intervalMs: this.#intervalMs, what: 'repair' }, { clock: this.#clock, logger: components.logger }, (signal) => this.#pass(signal))
  }

  async start(): Promise<void> {
    if (this.#passes.started) return
    await this.#load()
    this.#codec ??= await createRebuildCodec(this.#c.pool)
    this.#passes.start()
  }

  /** Aborts the pass in progress (its cursor is saved) and waits for it. */
  stop(): Promise<void> {
    return this.#passes.stop()
  }

  stats(): RepairStats {
    const t = this.#state.totals
    return { ...t, backlogShards: this.#backlog() }
  }

  /** Runs one pass now, after any pass in progress: from the saved cursor if a pass was cut short. */
  runPass(signal?: AbortSignal): Promise<RepairPassReport> {
    return this.#passes.run(signal)
  }

  /** Known work not done: the last completed pass's leftovers, or this pass's if it already found more. */
  #backlog(): number {
    const pass = this.#state.pass
    return Math.max(this.#state.totals.backlogShards, pass.deferredShards + pass.failedShards)
  }

  async #load(): Promise<void> {
    if (this.#loaded) return
    this.#loaded = true
    try {
      this.#state = (await readStateFile(this.#statePath, checkRepairState)) ?? freshRepairState()
    } catch (err) {
      if (!(err instanceof StateFileError)) throw err
      // A lost cursor costs one pass from the start, never data.
      this.#c.logger.warn({ err, path: this.#statePath }, 'repair state unreadable; starting a new pass')
      this.#state = freshRepairState()
    }
    this.#metrics.backlog.set(this.#backlog())
  }

  async #pass(combined: AbortSignal | undefined): Promise<RepairPassReport> {
    await this.#load()
    this.#codec ??= await createRebuildCodec(this.#c.pool)
    const resumed = this.#state.cursor !== null
    let examined = 0
    try {
      let batch: { group: ChunkGroup; startToken: string | null }[] = []
      let batchBytes = 0
      for await (const item of this.#groups()) {
        batch.push(item)
        batchBytes += item.group.copies.reduce((n, c) => n + c.sizeBytes, 0)
        if (batch.length < this.#batchChunks && batchBytes < this.#batchBytesMax) continue
        examined += await this.#runBatch(batch, combined)
        batch = []
        batchBytes = 0
      }
      if (batch.length > 0) examined += await this.#runBatch(batch, combined)
    } catch (err) {
      if (!(err instanceof PassAbortedError)) throw err
      await writeStateFile(this.#statePath, this.#state)
      return this.#report(resumed, examined, false)
    }
    return this.#finishPass(resumed, examined)
  }

  /** Processes one batch and moves the cursor past it, durably. */
  async #runBatch(items: { group: ChunkGroup; startToken: string | null }[], signal: AbortSignal | undefined): Promise<number> {
    throwIfAborted(signal)
    const map = this.#c.maps.current()
    const active = map.members.filter((m) => m.state === 'active').length
    this.#bucket.setRate(this.#cap / Math.max(1, active))
    const deps = {
      selfId: this.#c.memberId,
      store: this.#c.store,
      peers: this.#c.peers,
      liveness: this.#c.liveness,
      codec: this.#codec as RebuildCodec,
      bucket: this.#bucket,
      logger: this.#c.logger,
      hasBatchMax: this.#hasBatchMax,
      rebuildConcurrency: this.#rebuildConcurrency,
      putBatchBytesMax: this.#putBatchBytesMax,
      codecBatchChunks: this.#codecBatchChunks,
    }
    const settledBefore = this.#clock.nowMs() - this.#settleMs
    const history = (this.#c.maps.history?.() ?? []).filter((m) => m.epoch < map.epoch).sort((a, b) => b.epoch - a.epoch)
    const tally = await new RepairBatch(deps, map, history, settledBefore, signal).run(items.map((i) => i.group))
    this.#account(tally)
    const last = items[items.length - 1] as { group: ChunkGroup; startToken: string | null }
    this.#state.cursor = { cidHex: Buffer.from(last.group.cid).toString('hex'), resumeToken: last.startToken }
    const nowMs = this.#clock.nowMs()
    if (nowMs - this.#lastCheckpointMs >= this.#checkpointIntervalMs) {
      await writeStateFile(this.#statePath, this.#state)
      this.#lastCheckpointMs = nowMs
    }
    return items.length
  }

  #account(t: BatchTally): void {
    const pass = this.#state.pass
    const totals = this.#state.totals
    pass.chunksExamined += t.chunksExamined
    pass.movedShards += t.movedShards
    pass.movedBytes += t.movedBytes
    pass.repairedShards += t.repairedShards
    pass.repairedBytes += t.repairedBytes
    pass.fetchedBytes += t.fetchedBytes
    pass.deletedShards += t.deletedShards
    totals.movedShards += t.movedShards
    totals.movedBytes += t.movedBytes
    totals.repairedShards += t.repairedShards
    totals.repairedBytes += t.repairedBytes
    for (const [reason, n] of t.failures) {
      pass.failures[reason] = (pass.failures[reason] ?? 0) + n
      if (reason === 'target-down' || reason === 'unsettled') pass.deferredShards += n
      else pass.failedShards += n
      this.#metrics.failures.inc({ reason }, n)
    }
    this.#metrics.chunks.inc(t.chunksExamined)
    this.#metrics.shards.inc({ action: 'moved' }, t.movedShards)
    this.#metrics.shards.inc({ action: 'rebuilt' }, t.repairedShards)
    this.#metrics.bytes.inc({ action: 'moved' }, t.movedBytes)
    this.#metrics.bytes.inc({ action: 'rebuilt' }, t.repairedBytes)
    this.#metrics.bytes.inc({ action: 'fetched' }, t.fetchedBytes)
    this.#metrics.deleted.inc(t.deletedShards)
    this.#metrics.backlog.set(this.#backlog())
  }

  /**
   * The local listing as chunks, from the saved cursor on. The store lists in
   * location order, not by chunk, so a chunk's local copies are looked up when
   * the listing reaches the first of them and the later ones are passed over:
   * a copy that arrives during the pass (a rebuild or move into this node) lands
   * after the chunk's older copies and does not bring the chunk round again.
   * Each group carries the token of the page its row came from, which is where a
   * resume lists from; rows on that page up to the cursor's chunk are skipped.
   */
  async *#groups(): AsyncGenerator<{ group: ChunkGroup; startToken: string | null }> {
    const cursor = this.#state.cursor
    let token = cursor?.resumeToken ?? null
    let skipThrough = cursor === null ? undefined : Buffer.from(cursor.cidHex, 'hex')
    for (;;) {
      const page = await this.#list(token)
      // Only the resumed page holds rows up to the cursor; if its chunk moved off it, nothing is skipped.
      let skipping = skipThrough !== undefined && page.shards.some((s) => Buffer.compare(s.address.chunkCid, skipThrough as Buffer) === 0)
      for (const info of page.shards) {
        const cid = info.address.chunkCid
        if (skipping) {
          skipping = Buffer.compare(cid, skipThrough as Buffer) !== 0
          continue
        }
        const copies = await this.#c.store.chunkShards(cid)
        const first = copies[0]
        if (first !== undefined && first.position !== undefined && info.position !== undefined && first.position < info.position) continue
        // A copy outside chunkShards' index range still counts for this group.
        if (!copies.some((c) => c.address.index === info.address.index)) copies.push(info)
        const group = { cid, copies: copies.map((c) => ({ index: c.address.index, corrupt: c.corrupt, sizeBytes: c.sizeBytes, lastPutUnixMs: c.lastPutUnixMs })) }
        yield { group, startToken: token }
      }
      skipThrough = undefined
      if (page.nextPageToken === undefined) break
      token = page.nextPageToken
    }
  }

  async #list(token: string | null): Promise<ListPage> {
    try {
      return await this.#c.store.listShards({ pageSize: this.#listPageSize, ...(token === null ? {} : { pageToken: token }) })
    } catch (err) {
      if (!(err instanceof PageTokenError) || token === null) throw err
      // A token from an older store (or index format): the pass lists from the start again.
      this.#c.logger.warn({ err }, 'saved repair page token refused by the store; listing from the start')
      return this.#c.store.listShards({ pageSize: this.#listPageSize })
    }
  }

  async #finishPass(resumed: boolean, examined: number): Promise<RepairPassReport> {
    const report = this.#report(resumed, examined, true)
    const nowMs = this.#clock.nowMs()
    const totals = this.#state.totals
    totals.passesCompleted += 1
    totals.lastPassCompletedUnixMs = nowMs
    totals.backlogShards = this.#state.pass.deferredShards + this.#state.pass.failedShards
    this.#state.cursor = null
    this.#state.pass = emptyPassCounters()
    await writeStateFile(this.#statePath, this.#state)
    this.#metrics.lastPass.set(nowMs / 1000)
    this.#metrics.backlog.set(this.#backlog())
    this.#c.logger.info(report, 'repair pass completed')
    return report
  }

  #report(resumed: boolean, examined: number, completed: boolean): RepairPassReport {
    const { failures, ...counters } = this.#state.pass
    return { ...counters, failures: { ...failures }, chunksExaminedThisRun: examined, resumed, completed }
  }
}
