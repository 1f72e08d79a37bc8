/**
 * The volume engine: one attached volume served as an NBD backend.
 *
 * Write path: reserve dirty-map budget, append to the journal, apply to the dirty
 * map in seq order, acknowledge (FUA also waits for `durable`; FLUSH is a journal
 * sync). A background flusher folds the dirty map into new chunks, a new manifest
 * root, the control-plane head and a journal checkpoint. Reads overlay the dirty
 * map on the chunks of the current root. docs/adr/0008-volume-engine.md has the why.
 */
import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import { InvalidArgumentError, ShuttingDownError, assert } from '../../core/errors.js'
import type { Startable } from '../../core/startable.js'
import type { ControlPlane, Snapshot } from '../../control-plane/types.js'
import type { BlockSizeConstraints, Extent, NbdBackend, WriteOptions, ZeroOptions } from '../nbd/backend.js'
import type { ChunkStore, JournalOp, ManifestStore, VolumeJournal } from '../contracts.js'
import { DirtyBudget } from './budget.js'
import { ENTRY_OVERHEAD_BYTES, type DirtyGeneration } from './dirty-chunk.js'
import { DirtyMap, chunkPieces } from './dirty-map.js'
import { VolumeFailedError, VolumeFencedError } from './errors.js'
import { mergeGeneration } from './flusher.js'
import type { HeadWriter } from './head-writer.js'
import type { LookupCache } from './lookup-cache.js'
import { ENGINE_STATES, type EngineState, type VolumeMetrics } from './metrics.js'
import type { ResolvedVolumeEngineOptions } from './options.js'
import { readRange, extentsOf } from './reader.js'

/** Largest I/O the engine advertises (NBD_INFO_BLOCK_SIZE maximum). */
export const MAX_IO_BYTES = 32 * 1024 * 1024

/** Everything attach established; the engine takes it over. */
export interface EngineState0 {
  volumeName: string
  volumeUid: string
  nodeId: string
  epoch: number
  chunkSizeBytes: number
  /** Seq, root, size and checkpoint the recovery started from. */
  headSeq: number
  headSizeBytes: number
  checkpointSeq: number
  options: ResolvedVolumeEngineOptions
  journal: VolumeJournal
  lookups: LookupCache
  headWriter: HeadWriter
}

export interface EngineDeps {
  controlPlane: ControlPlane
  chunkStore: ChunkStore
  manifest: ManifestStore
  logger: Logger
  metrics: VolumeMetrics
}

/** A cut being flushed: its generation and the seq and size it brings the head to. */
interface CutPlan {
  gen: DirtyGeneration
  seq: number
  sizeBytes: number
}

interface PendingApply {
  op: JournalOp
  resolve: () => void
  reject: (err: unknown) => void
}

const FENCE_ERROR_NAMES = new Set(['EpochFencedError', 'VolumeFencedError'])

/** True for the errors by which a journal or the control plane says a newer epoch took over. */
export function isFencingError(err: unknown): boolean {
  return err instanceof Error && FENCE_ERROR_NAMES.has(err.name)
}

export class VolumeEngine implements NbdBackend, Startable {
  readonly isReadOnly = false
  readonly canFua = true
  readonly canMultiConn = true
  readonly canTrim = true
  readonly canZero = true
  /** Zeroing is a metadata record, never slower than writing. */
  readonly canFastZero = true
  readonly blockSize: BlockSizeConstraints
  readonly description: string

  private readonly s: EngineState0
  private readonly deps: EngineDeps
  private readonly dirty: DirtyMap
  private readonly budget: DirtyBudget
  private readonly pending = new Map<number, PendingApply>()
  private state: EngineState = 'recovering'
  private failure: Error | undefined
  /** Why the engine is failed: a journal failure is final, a flush failure clears when a flush succeeds. */
  private failureReason: 'journal' | 'flush' | undefined
  private appliedSeq: number
  private appliedSizeBytes: number
  private cutPlan: CutPlan | undefined
  private flushChain: Promise<void> = Promise.resolve()
  private flushRunning = false
  private flushFailures = 0
  private intervalTimer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private stopping: Promise<void> | undefined

  constructor(s: EngineState0, deps: EngineDeps) {
    this.s = s
    this.deps = deps
    this.dirty = new DirtyMap(s.chunkSizeBytes)
    this.budget = new DirtyBudget(s.options.dirtyBytesMax, () => this.dirty.costBytes)
    this.appliedSeq = s.headSeq
    this.appliedSizeBytes = s.headSizeBytes
    this.blockSize = { minimumBytes: 1, preferredBytes: s.chunkSizeBytes, maximumBytes: MAX_IO_BYTES }
    this.description = `cairn volume ${s.volumeName}`
    this.setState('recovering')
  }

  // ---------------------------------------------------------------- lifecycle

  get sizeBytes(): number {
    return this.appliedSizeBytes
  }

  get volumeName(): string {
    return this.s.volumeName
  }

  get epoch(): number {
    return this.s.epoch
  }

  /** Replays recovered journal records (attach only, before start). */
  replay(seq: number, op: JournalOp): void {
    assert(this.state === 'recovering', 'replay only during recovery')
    assert(seq === this.appliedSeq + 1, `replayed seq ${seq} after ${this.appliedSeq}`)
    this.applyOp(seq, op)
  }

  async start(): Promise<void> {
    if (this.state !== 'recovering') return
    this.setState('serving')
    this.intervalTimer = setInterval(() => {
      if (this.appliedSeq > this.s.headSeq) this.kickFlusher()
    }, this.s.options.flushIntervalMs)
    // The NBD server and the daemon keep the process alive; a timer must not.
    this.intervalTimer.unref()
    if (this.dirty.costBytes >= this.s.options.flushThresholdBytes) this.kickFlusher()
  }

  /** Final flush and checkpoint, release of the attachment, journal closed. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown(): Promise<void> {
    const wasFenced = this.state === 'fenced'
    const log = this.deps.logger.child({ volume: this.s.volumeName, epoch: this.s.epoch })
    this.clearTimers()
    // Undefined while recovering: this engine acknowledged nothing, so whatever the head lagged before it still lags.
    let headCurrent: boolean | undefined
    if (!wasFenced && this.state !== 'recovering') {
      try {
        await this.s.journal.sync()
        await this.flushToSeq(this.appliedSeq, true)
        headCurrent = true
      } catch (err) {
        // The journal still holds every synced record; the next attach replays them.
        log.warn({ err }, 'final flush failed; the next attach recovers from the journal')
        headCurrent = false
      }
    }
    this.budget.rejectAll(new ShuttingDownError(`volume ${this.s.volumeName} is detached`))
    if (this.state !== 'fenced') {
      await this.deps.controlPlane.releaseAttachment(this.s.volumeName, this.s.nodeId, this.s.epoch, { headCurrent }).catch((err: unknown) => {
        log.warn({ err }, 'releasing the attachment failed')
      })
    }
    await this.s.journal.close().catch((err: unknown) => log.warn({ err }, 'closing the journal failed'))
    if (this.state !== 'fenced') this.setState('stopped')
    log.info({ appliedSeq: this.appliedSeq, headSeq: this.s.headSeq }, 'volume detached')
  }

  /** Undefined when serving; otherwise why not (for /readyz). */
  readiness(): string | undefined {
    if (this.state === 'serving') return undefined
    return this.failure === undefined ? this.state : `${this.state}: ${this.failure.message}`
  }

  get engineState(): EngineState {
    return this.state
  }

  /** Bytes held by the dirty map. */
  get dirtyBytes(): number {
    return this.dirty.costBytes
  }

  // ---------------------------------------------------------------- NBD backend

  async pread(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.checkReadable()
    return readRange(this.readerDeps(), offsetBytes, lengthBytes)
  }

  async pwrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    this.checkRange(offsetBytes, data.length)
    await this.submit({ kind: 'write', offsetBytes, data }, options.fua)
  }

  /**
   * NBD FLUSH: waits only for the journal to hold every acknowledged write durably on
   * its replicas, never for the flusher, so a stuck or failing flusher (chunk puts,
   * manifest, head) delays no FLUSH (ADR 0008, 2026-11-22).
   */
  async flush(): Promise<void> {
    this.checkReadable()
    if (this.state === 'failed' && this.failureReason === 'journal') {
      throw new VolumeFailedError(`volume ${this.s.volumeName} is failed`, { cause: this.failure })
    }
    if (this.state !== 'serving' && this.state !== 'failed') throw new ShuttingDownError(`volume ${this.s.volumeName} is not serving (${this.state})`)
    try {
      await this.s.journal.sync()
    } catch (err) {
      throw this.journalError(err, false)
    }
  }

  async trim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes)
    await this.submit({ kind: 'trim', offsetBytes, lengthBytes }, options.fua)
  }

  /** NO_HOLE is not honoured: all-zero chunks are never stored (ARCHITECTURE, "Data model"). */
  async zero(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes)
    await this.submit({ kind: 'zero', offsetBytes, lengthBytes }, options.fua)
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkReadable()
    return extentsOf(this.readerDeps(), offsetBytes, lengthBytes)
  }

  /** NBD_CMD_CACHE: warms the chunk store's cache by reading the range. */
  async cache(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkReadable()
    await readRange(this.readerDeps(), offsetBytes, Math.min(lengthBytes, MAX_IO_BYTES))
  }

  // ---------------------------------------------------------------- volume operations

  /**
   * Grows the volume to `sizeBytes` (already granted in the control plane by
   * resizeVolume). New connections see the new size.
   */
  async resize(sizeBytes: number): Promise<void> {
    this.checkWritable()
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes % 4096 !== 0 || sizeBytes < this.appliedSizeBytes) {
      throw new InvalidArgumentError(`sizeBytes: must be a multiple of 4096 of at least ${this.appliedSizeBytes}, got ${sizeBytes}`)
    }
    if (sizeBytes === this.appliedSizeBytes) return
    const volume = await this.deps.controlPlane.getVolume(this.s.volumeName)
    if (sizeBytes > volume.sizeBytes) {
      throw new InvalidArgumentError(`sizeBytes: ${sizeBytes} exceeds the volume's ${volume.sizeBytes}; resize the Volume first`)
    }
    await this.submit({ kind: 'resize', sizeBytes }, true)
  }

  /**
   * Flushes every change acknowledged before the call into the head, then saves
   * the head as snapshot `name`; O(1) beyond that flush.
   */
  async snapshot(name: string): Promise<Snapshot> {
    this.checkWritable()
    await this.flushToSeq(this.appliedSeq, false)
    return this.deps.controlPlane.createSnapshot({ name, volume: this.s.volumeName })
  }

  /** Forces the flusher until every change applied before the call is in the head and checkpointed. */
  async flushDirty(): Promise<void> {
    this.checkWritable()
    await this.flushToSeq(this.appliedSeq, false)
  }

  // ---------------------------------------------------------------- write path

  private async submit(op: JournalOp, fua: boolean): Promise<void> {
    this.checkWritable()
    const reserveBytes = this.costEstimate(op)
    await this.budget.reserve(reserveBytes, () => {
      this.deps.metrics.backpressureWaits.inc({ volume: this.s.volumeName })
      this.kickFlusher()
    })
    let durable: Promise<void>
    try {
      this.checkWritable()
      const appended = await this.append(op)
      durable = appended.durable
      await this.applyInOrder(appended.seq, op)
    } finally {
      this.budget.release(reserveBytes)
    }
    if (this.dirty.costBytes >= this.s.options.flushThresholdBytes) this.kickFlusher()
    if (!fua) return
    try {
      await durable
    } catch (err) {
      throw this.journalError(err, false)
    }
  }

  private async append(op: JournalOp): Promise<{ seq: number; durable: Promise<void> }> {
    try {
      const appended = await this.s.journal.append(op)
      // Durability is awaited only for FUA; a rejection must never go unhandled.
      appended.durable.catch(() => undefined)
      return appended
    } catch (err) {
      // After a failed append the journal's order is unknown: only a re-attach is safe.
      throw this.journalError(err, true)
    }
  }

  /** Applies records strictly in seq order, whatever order the journal resolved appends in. */
  private applyInOrder(seq: number, op: JournalOp): Promise<void> {
    assert(seq > this.appliedSeq && !this.pending.has(seq), `journal assigned seq ${seq} twice or behind ${this.appliedSeq}`)
    const done = new Promise<void>((resolve, reject) => this.pending.set(seq, { op, resolve, reject }))
    for (let next = this.pending.get(this.appliedSeq + 1); next !== undefined; next = this.pending.get(this.appliedSeq + 1)) {
      this.pending.delete(this.appliedSeq + 1)
      this.applyOp(this.appliedSeq + 1, next.op)
      next.resolve()
    }
    return done
  }

  private applyOp(seq: number, op: JournalOp): void {
    if (op.kind === 'resize') this.appliedSizeBytes = Math.max(this.appliedSizeBytes, op.sizeBytes)
    else this.dirty.apply(op, seq)
    this.appliedSeq = seq
    this.updateDirtyGauge()
  }

  /** Upper bound of the bytes `op` can add to the dirty map. */
  private costEstimate(op: JournalOp): number {
    if (op.kind === 'resize') return 0
    const length = op.kind === 'write' ? op.data.length : op.lengthBytes
    const full = this.s.chunkSizeBytes + ENTRY_OVERHEAD_BYTES
    let bytes = 0
    for (const p of chunkPieces(op.offsetBytes, length, this.s.chunkSizeBytes)) {
      const whole = p.start === 0 && p.end === this.s.chunkSizeBytes
      bytes += op.kind !== 'write' && whole ? ENTRY_OVERHEAD_BYTES : full
    }
    return bytes
  }

  // ---------------------------------------------------------------- flusher

  /** Starts a background flush unless one is running or a retry is scheduled. */
  private kickFlusher(): void {
    if (this.flushRunning || this.retryTimer !== undefined || this.state !== 'serving' && this.state !== 'failed') return
    if (this.stopping !== undefined) return
    this.flushRunning = true
    this.runFlush().then(
      () => this.flushSucceeded(),
      (err: unknown) => this.flushFailed(err),
    )
  }

  private flushSucceeded(): void {
    this.flushRunning = false
    this.flushFailures = 0
    if (this.state === 'failed' && this.failureReason === 'flush') {
      this.failure = undefined
      this.failureReason = undefined
      this.setState('serving')
    }
    const more = this.dirty.costBytes >= this.s.options.flushThresholdBytes || this.budget.waiting > 0
    if (more && this.appliedSeq > this.s.headSeq) this.kickFlusher()
  }

  private flushFailed(err: unknown): void {
    this.flushRunning = false
    if (this.state === 'fenced') return
    this.flushFailures++
    this.deps.metrics.flushFailures.inc({ volume: this.s.volumeName })
    this.deps.logger.warn({ err, volume: this.s.volumeName, failures: this.flushFailures }, 'flush failed; will retry')
    if (this.flushFailures >= this.s.options.flushRetriesMax && this.state === 'serving') {
      this.fail('flush', new VolumeFailedError(`volume ${this.s.volumeName}: ${this.flushFailures} flushes failed in a row`, { cause: err }))
    }
    if (this.stopping !== undefined) return
    const { flushBackoffBaseMs, flushBackoffMaxMs } = this.s.options
    const delayMs = Math.min(flushBackoffMaxMs, flushBackoffBaseMs * 2 ** Math.min(this.flushFailures - 1, 20))
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.kickFlusher()
    }, delayMs)
    this.retryTimer.unref()
  }

  /** Flushes until the head and the checkpoint include `seq`. */
  private async flushToSeq(seq: number, final: boolean): Promise<void> {
    for (let round = 0; this.s.headSeq < seq || this.s.checkpointSeq < seq; round++) {
      if (this.state === 'fenced') throw this.fencedError()
      assert(round < 1000, 'flushToSeq makes progress')
      await this.runFlush(final)
    }
  }

  /** One flush, serialised with every other. */
  private runFlush(final = false): Promise<void> {
    const run = this.flushChain.then(() => this.flushOnce(final))
    this.flushChain = run.catch(() => undefined)
    return run
  }

  private async flushOnce(final: boolean): Promise<void> {
    if (this.state === 'fenced') throw this.fencedError()
    if (this.stopping !== undefined && !final) throw new ShuttingDownError(`volume ${this.s.volumeName} is detaching`)
    if (this.cutPlan === undefined && this.appliedSeq > this.s.headSeq) {
      this.cutPlan = { gen: this.dirty.cut(), seq: this.appliedSeq, sizeBytes: this.appliedSizeBytes }
    }
    const endTimer = this.deps.metrics.flushSeconds.startTimer({ volume: this.s.volumeName })
    try {
      if (this.cutPlan !== undefined) await this.commitCut(this.cutPlan)
      if (this.s.checkpointSeq < this.s.headSeq) await this.writeCheckpoint()
    } catch (err) {
      if (isFencingError(err)) throw this.fence(err)
      throw err
    } finally {
      endTimer()
    }
  }

  private async commitCut(plan: CutPlan): Promise<void> {
    const { chunkStore, manifest, metrics } = this.deps
    const root = this.s.lookups.currentRoot
    const merged = await mergeGeneration(
      {
        chunkStore,
        lookups: this.s.lookups,
        chunkSizeBytes: this.s.chunkSizeBytes,
        batchChunks: this.s.options.flushBatchChunks,
        batchesInFlight: this.s.options.flushBatchesInFlight,
      },
      root,
      plan.gen,
    )
    const newRoot: CID | null = merged.changes.size === 0 ? root : await manifest.update(root, merged.changes)
    if (this.state === 'fenced') throw this.fencedError()
    // Every record in the cut must be durable in the journal before the head names its seq:
    // otherwise a crash could leave the journal numbering behind the head, and the next
    // engine's records would collide with seqs the head already claims.
    await this.s.journal.sync()
    await this.s.headWriter.write({ rootCid: newRoot?.toString() ?? null, sizeBytes: plan.sizeBytes, journalSeq: plan.seq })
    // The head now holds the cut: move the read view forward in one synchronous step.
    this.s.lookups.advance(newRoot, merged.changes)
    this.s.headSeq = plan.seq
    this.s.headSizeBytes = plan.sizeBytes
    this.dirty.committed(plan.gen)
    this.cutPlan = undefined
    const labels = { volume: this.s.volumeName }
    metrics.flushedChunks.inc(labels, merged.chunksPut)
    metrics.flushedBytes.inc(labels, merged.bytesPut)
    metrics.zeroChunksSkipped.inc(labels, merged.zeroChunks)
    this.updateDirtyGauge()
    this.budget.wake()
  }

  private async writeCheckpoint(): Promise<void> {
    const seq = this.s.headSeq
    const rootCid = this.s.lookups.currentRoot?.toString() ?? null
    await this.s.journal.checkpoint({ rootCid, sizeBytes: this.s.headSizeBytes, seq })
    this.s.checkpointSeq = Math.max(this.s.checkpointSeq, seq)
  }

  // ---------------------------------------------------------------- state

  private readerDeps() {
    return {
      dirty: this.dirty,
      lookups: this.s.lookups,
      chunkStore: this.deps.chunkStore,
      manifest: this.deps.manifest,
      chunkSizeBytes: this.s.chunkSizeBytes,
      sizeBytes: this.appliedSizeBytes,
    }
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    const ok = Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes) && offsetBytes >= 0 && lengthBytes > 0
    if (!ok || offsetBytes + lengthBytes > this.appliedSizeBytes) {
      throw new InvalidArgumentError(`range [${offsetBytes}, +${lengthBytes}) is outside the volume of ${this.appliedSizeBytes} bytes`)
    }
  }

  private checkReadable(): void {
    if (this.state === 'fenced') throw this.fencedError()
    if (this.stopping !== undefined || this.state === 'stopped') throw new ShuttingDownError(`volume ${this.s.volumeName} is detached`)
  }

  private checkWritable(): void {
    this.checkReadable()
    if (this.state === 'failed') throw new VolumeFailedError(`volume ${this.s.volumeName} is failed`, { cause: this.failure })
    if (this.state !== 'serving') throw new ShuttingDownError(`volume ${this.s.volumeName} is not serving (${this.state})`)
  }

  /** Classifies a journal error, changing state as it requires; returns what the request should throw. */
  private journalError(err: unknown, fatal: boolean): Error {
    if (isFencingError(err)) return this.fence(err)
    if (this.state === 'fenced') return this.fencedError()
    if (!fatal) return err instanceof Error ? err : new VolumeFailedError(String(err))
    this.fail('journal', new VolumeFailedError(`volume ${this.s.volumeName}: journal append failed`, { cause: err }))
    this.deps.logger.error({ err, volume: this.s.volumeName }, 'journal append failed; the engine stops taking writes')
    return err instanceof Error ? err : (this.failure as Error)
  }

  private fence(err: unknown): VolumeFencedError {
    if (this.state !== 'fenced') {
      this.deps.logger.warn({ err, volume: this.s.volumeName, epoch: this.s.epoch }, 'fenced by a newer attachment')
      this.failure = err instanceof Error ? err : undefined
      this.setState('fenced')
      this.clearTimers()
      const fenced = this.fencedError()
      this.budget.rejectAll(fenced)
      for (const p of this.pending.values()) p.reject(fenced)
      this.pending.clear()
    }
    return this.fencedError()
  }

  private fail(reason: 'journal' | 'flush', err: VolumeFailedError): void {
    if (this.state === 'failed' && reason === 'journal') this.failureReason = 'journal'
    if (this.state !== 'serving') return
    this.failure = err
    this.failureReason = reason
    this.setState('failed')
    this.budget.rejectAll(err)
    if (reason === 'journal') {
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    }
  }

  private fencedError(): VolumeFencedError {
    return new VolumeFencedError(`volume ${this.s.volumeName}: epoch ${this.s.epoch} was fenced by a newer attachment`, { cause: this.failure })
  }

  private setState(state: EngineState): void {
    this.state = state
    for (const st of ENGINE_STATES) this.deps.metrics.state.set({ volume: this.s.volumeName, state: st }, st === state ? 1 : 0)
  }

  private updateDirtyGauge(): void {
    this.deps.metrics.dirtyBytes.set({ volume: this.s.volumeName }, this.dirty.costBytes)
  }

  private clearTimers(): void {
    clearInterval(this.intervalTimer)
    clearTimeout(this.retryTimer)
    this.intervalTimer = undefined
    this.retryTimer = undefined
  }
}
