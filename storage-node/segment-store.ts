/**
 * The segment shard store: shards appended to segment files, located by a
 * better-sqlite3 index, written in group commits (many puts, one fsync), read
 * with full verification, space reclaimed by background compaction.
 * Crash-safety reasoning: docs/adr/0003-shard-store.md.
 */
import { mkdir, truncate, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../core/logger.js'
import { CairnError, InvalidArgumentError, ResourceExhaustedError, ShuttingDownError, assert } from '../core/errors.js'
import { decodeShard, formatAddress, ShardCorruptError, validateAddress, type Shard, type ShardAddress } from '../core/shard.js'
import {
  addressHash,
  addressHashOf,
  asBuffer,
  cidHash,
  LocationCache,
  locationOf,
  packRecords,
  SEGMENT_ID_LIMIT,
  SEGMENT_STRIDE,
  SegmentIndex,
  splitLocation,
  WaitingRecords,
  type NewRecord,
  type ShardRow,
  type WaitingRecord,
} from './segment-index.js'
import { IndexFlusher, type FlushReply } from './index-flusher.js'
import { MAX_TOTAL_SHARDS } from '../core/erasure/codec.js'
import { listSegmentFiles, scanRecords, SegmentFile, segmentFileName, syncDirectory } from './segment-file.js'
import { compactSegment, pickCompactionCandidate } from './compaction.js'
import type { StoreMetrics } from './metrics.js'
import {
  DataDirError,
  DiskFullError,
  PageTokenError,
  ShardNotFoundError,
  type DeleteOptions,
  type GetResult,
  type ListOptions,
  type ListPage,
  type PutResult,
  type ShardInfo,
  type ShardStore,
  type StoreStats,
} from './shard-store.js'

export interface SegmentStoreInit {
  /** Directory for `segments/*.seg` and `index.sqlite`; created if missing. */
  dataDir: string
  /** The active segment is sealed and a new one started past this size. @default 268435456 (256 MiB) */
  segmentSizeBytes?: number
  /** A sealed segment whose live bytes fall below this fraction of its size is compacted. @default 0.5 */
  compactionLiveRatio?: number
  /** Pause between background compaction passes; 0 disables the background compactor. @default 10000 */
  compactionIntervalMs?: number
  /** Most bytes one group commit writes before its fsync. @default 16777216 (16 MiB) */
  groupCommitMaxBytes?: number
  /** Most bytes waiting for a group commit; puts beyond it fail with ResourceExhaustedError. @default 268435456 (256 MiB) */
  pendingMaxBytes?: number
  /**
   * Read shards with a synchronous pread on the event loop instead of the libuv thread
   * pool: several times the throughput from the page cache, at the cost of blocking the
   * loop for one device read on a miss. Use false on slow (rotational) disks.
   * @default true
   */
  syncReads?: boolean
  /**
   * Acknowledged records wait in memory for one index transaction that covers many
   * groups; the transaction runs while the next group's fsync is in flight.
   * At this many waiting records the next group flushes them. Their bytes are fsynced
   * before they wait, and recovery rolls forward any the index lost. 128 rows take about
   * 1.5 ms to index, well inside one 1 MiB durable write (2.5 ms or more here), so the
   * flush stays hidden; larger flushes cost less CPU a row but outlast the write.
   * With the index worker (`indexWorker`) the flush runs beside the event loop instead,
   * so it need not fit in the write: 512 rows cost ~7–10 µs of the worker's CPU a row
   * against ~13 µs at 128 (measured, loaded machine).
   * @default 512 with the index worker, 128 without
   */
  indexFlushRecords?: number
  /** Waiting records are indexed at the latest this long after their group's ack. @default 50 */
  indexFlushIntervalMs?: number
  /**
   * Run the write-behind index flushes on a worker thread with its own SQLite connection,
   * off the event loop (which otherwise spends most of a put's CPU on them). If the
   * worker cannot start or dies, the event loop flushes as before.
   * @default true
   */
  indexWorker?: boolean
  /**
   * Locations of recently read shards kept in memory (about 150 bytes each), so a
   * repeated read skips the index lookup; 0 disables it.
   * @default 65536
   */
  locationCacheEntries?: number
  /** Reads one getShards call keeps in flight. @default 32 */
  readConcurrency?: number
  /** @default 1000 */
  listPageSizeDefault?: number
  /** @default 10000 */
  listPageSizeMax?: number
  /**
   * Rows one CID-prefix listing call filters at most (the index has no CID order to seek
   * in): a page may come back short, even empty, with a token to go on from.
   * @default 65536
   */
  listScanRowsMax?: number
  /** Clock for last-put times. @default Date.now */
  nowMs?: () => number
}

export interface SegmentStoreComponents {
  logger: Logger
  metrics?: StoreMetrics
}

/** A shard a group will write: its address hash, and whether the index had no row. */
interface PlannedWrite {
  shard: Shard
  hash: number
  fresh: boolean
}

interface PendingPut {
  shards: readonly Shard[]
  bytes: number
  result: PutResult
  resolve: (result: PutResult) => void
  reject: (err: unknown) => void
}

/** An I/O failure reading a segment (not a checksum failure). */
export class ShardReadError extends CairnError {
  override readonly name = 'ShardReadError'
  readonly kind = 'unavailable'
}

export function createSegmentShardStore(init: SegmentStoreInit, components: SegmentStoreComponents): SegmentShardStore {
  return new SegmentShardStore(init, components)
}

export class SegmentShardStore implements ShardStore {
  readonly segmentsDir: string
  /** Options with defaults applied. */
  readonly options: Required<Omit<SegmentStoreInit, 'dataDir'>>
  /** Internal state shared with compaction and recovery; not part of the ShardStore contract. */
  index!: SegmentIndex
  readonly segments = new Map<number, SegmentFile>()
  active!: SegmentFile
  /** Committed size of the active segment; the next group writes here. */
  activeSizeBytes = 0
  /** The id the next segment gets (allocateSegmentId); ids only grow. */
  nextSegmentId = 1
  readonly counts = { shards: 0, bytes: 0, corrupt: 0 }
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new'
  private pending: PendingPut[] = []
  private pendingBytes = 0
  private writing: Promise<void> | undefined
  private compactTimer: NodeJS.Timeout | undefined
  private compacting: Promise<unknown> | undefined
  /**
   * Records fsynced and acknowledged but not yet in the index, by address; all in the
   * active segment, back to back, ending at activeSizeBytes. Lookups see them first.
   */
  private readonly unindexed = new WaitingRecords()
  private indexTimer: NodeJS.Timeout | undefined
  /** The index worker, when it runs; see `indexWorker`. */
  private flusher: IndexFlusher | undefined
  /**
   * The records of the flush the worker is running, with the last-put time each had when
   * sent: they stay in `unindexed` (and readable from it) until the worker's commit is done.
   */
  private flushing: WaitingRecord[] = []
  /** The segment of the records in `flushing` (a segment roll waits for the flush first). */
  private flushingSegment = 0
  /** Read-path locations (see `locationCacheEntries`); cleared whenever rows move or go. */
  private readonly locations: LocationCache

  constructor(
    readonly init: SegmentStoreInit,
    readonly components: SegmentStoreComponents,
  ) {
    this.segmentsDir = join(init.dataDir, 'segments')
    this.options = {
      segmentSizeBytes: init.segmentSizeBytes ?? 256 * 1024 * 1024,
      compactionLiveRatio: init.compactionLiveRatio ?? 0.5,
      compactionIntervalMs: init.compactionIntervalMs ?? 10_000,
      groupCommitMaxBytes: init.groupCommitMaxBytes ?? 16 * 1024 * 1024,
      pendingMaxBytes: init.pendingMaxBytes ?? 256 * 1024 * 1024,
      syncReads: init.syncReads ?? true,
      indexFlushRecords: init.indexFlushRecords ?? ((init.indexWorker ?? true) ? 512 : 128),
      indexFlushIntervalMs: init.indexFlushIntervalMs ?? 50,
      indexWorker: init.indexWorker ?? true,
      locationCacheEntries: init.locationCacheEntries ?? 65_536,
      readConcurrency: init.readConcurrency ?? 32,
      listPageSizeDefault: init.listPageSizeDefault ?? 1000,
      listPageSizeMax: init.listPageSizeMax ?? 10_000,
      listScanRowsMax: init.listScanRowsMax ?? 65_536,
      nowMs: init.nowMs ?? Date.now,
    }
    // Locations are segment × 2^32 + offset: every record must start below 4 GiB into its segment.
    if (this.options.segmentSizeBytes + this.options.groupCommitMaxBytes > SEGMENT_STRIDE) {
      throw new InvalidArgumentError(`segmentSizeBytes + groupCommitMaxBytes must be at most 4 GiB, got ${this.options.segmentSizeBytes} + ${this.options.groupCommitMaxBytes}`)
    }
    this.locations = new LocationCache(this.options.locationCacheEntries)
  }

  get stopping(): boolean {
    return this.state !== 'running'
  }

  async start(): Promise<void> {
    assert(this.state === 'new', 'segment store started twice')
    await mkdir(this.segmentsDir, { recursive: true })
    this.index = new SegmentIndex(join(this.init.dataDir, 'index.sqlite'))
    try {
      await this.recover()
    } catch (err) {
      await this.closeFiles()
      throw err
    }
    if (this.options.indexWorker) await this.startFlusher()
    this.state = 'running'
    this.scheduleCompaction()
  }

  private async startFlusher(): Promise<void> {
    try {
      this.flusher = await IndexFlusher.start({ indexPath: join(this.init.dataDir, 'index.sqlite'), onReply: (reply) => this.flushed(reply) })
    } catch (err) {
      // Slower, never wrong: the event loop indexes the waiting records itself.
      this.components.logger.warn({ err }, 'index worker did not start; indexing on the event loop')
    }
  }

  async stop(): Promise<void> {
    if (this.state === 'new') this.state = 'stopped'
    if (this.state !== 'running') return
    this.state = 'stopping'
    clearTimeout(this.compactTimer)
    // Puts already accepted are committed (and fsynced) before the files close.
    while (this.writing !== undefined) await this.writing
    await this.compacting?.catch(() => undefined)
    try {
      // A failure here loses no shard: recovery rolls the waiting records forward.
      this.flushIndex()
    } finally {
      await this.closeFiles()
      this.state = 'stopped'
    }
  }

  private async closeFiles(): Promise<void> {
    clearTimeout(this.indexTimer)
    // Idle by now (stop flushed synchronously); its connection closes before ours checkpoints.
    await this.flusher?.stop()
    this.flusher = undefined
    for (const segment of this.segments.values()) await segment.retire()
    this.segments.clear()
    this.index?.close()
  }

  // ---- recovery -------------------------------------------------------------

  /** Brings files and index into agreement; the index is the truth. */
  private async recover(): Promise<void> {
    const log = this.components.logger
    for (const row of this.index.segments().filter((r) => r.state === 'compacting')) {
      // A compaction that never committed: its copy is garbage, the source is still indexed.
      await unlink(join(this.segmentsDir, segmentFileName(row.id))).catch(ignoreMissing)
      this.index.removeSegment(row.id)
      log.warn({ segment: row.id }, 'discarded unfinished compaction output')
    }
    const rows = this.index.segments()
    const known = new Set(rows.map((r) => r.id))
    const files = await listSegmentFiles(this.segmentsDir)
    for (const id of files.filter((f) => !known.has(f))) {
      // Rows are committed before files are created and removed before files are unlinked,
      // so a file without a row never held indexed data.
      await unlink(join(this.segmentsDir, segmentFileName(id)))
      log.warn({ segment: id }, 'removed orphan segment file')
    }
    const present = new Set(files)
    for (const row of rows) {
      if (!present.has(row.id) && row.sizeBytes > 0) throw new DataDirError(`segment ${row.id} is indexed with ${row.sizeBytes} bytes but its file is missing`)
      this.segments.set(row.id, await SegmentFile.open(this.segmentsDir, row.id, !present.has(row.id)))
    }
    this.nextSegmentId = Math.max(0, ...rows.map((r) => r.id), ...files) + 1
    const activeRow = rows.find((r) => r.state === 'active')
    if (activeRow === undefined) {
      const id = this.allocateSegmentId()
      this.index.addSegment(id, 'active')
      this.active = await SegmentFile.open(this.segmentsDir, id, true)
      await syncDirectory(this.segmentsDir)
      this.segments.set(id, this.active)
      this.activeSizeBytes = 0
    } else {
      this.active = this.segments.get(activeRow.id) as SegmentFile
      this.activeSizeBytes = activeRow.sizeBytes
      await this.rollForward()
    }
    const c = this.index.counts()
    this.counts.shards = c.shardCount
    this.counts.bytes = c.shardBytes
    this.counts.corrupt = c.corruptCount
    this.updateGauges()
    log.info({ segments: this.segments.size, shards: c.shardCount, bytes: c.shardBytes, addressMapBytes: this.index.addressMapBytes }, 'shard store recovered')
  }

  /**
   * Indexes records past the active segment's committed size that fully verify: their
   * fsync finished but the index commit (synchronous=NORMAL) did not reach the disk.
   * Truncates whatever follows them (a torn write that was never acknowledged).
   */
  private async rollForward(): Promise<void> {
    const fileSize = await this.active.sizeBytes()
    const committed = this.activeSizeBytes
    if (fileSize < committed) throw new DataDirError(`segment ${this.active.id} is ${fileSize} bytes, shorter than its committed ${committed}`)
    if (fileSize === committed) return
    const scan = await scanRecords(this.active, committed, fileSize)
    const nowMs = this.options.nowMs()
    // A record in the tail may be an acknowledged re-put replacing a copy marked corrupt.
    const fresh: NewRecord[] = scan.records
      .map((r) => ({ cid: r.chunkCid, index: r.index, hash: addressHash(r.chunkCid, r.index), offsetBytes: r.offsetBytes, lengthBytes: r.lengthBytes, lastPutMs: nowMs }))
      .filter((r) => this.index.lookup({ chunkCid: r.cid, index: r.index }, r.hash)?.corrupt !== false)
    const replaced = this.index.durably(() => this.index.commitWrites(this.active.id, scan.endOffsetBytes, fresh))
    assert(replaced.count === replaced.corrupt, 'roll-forward replaced only corrupt rows')
    if (scan.endOffsetBytes < fileSize) {
      await truncate(this.active.path, scan.endOffsetBytes)
      await this.active.handle.datasync()
    }
    this.activeSizeBytes = scan.endOffsetBytes
    this.components.logger.info(
      { segment: this.active.id, rolledForward: fresh.length, truncatedBytes: fileSize - scan.endOffsetBytes },
      'recovered the active segment tail',
    )
  }

  // ---- writes ---------------------------------------------------------------

  putShards(shards: readonly Shard[]): Promise<PutResult> {
    if (this.state !== 'running') return Promise.reject(new ShuttingDownError('shard store is not running'))
    if (shards.length === 0) return Promise.resolve({ writtenCount: 0, existingCount: 0 })
    const bytes = shards.reduce((sum, s) => sum + s.bytes.length, 0)
    if (this.pending.length > 0 && this.pendingBytes + bytes > this.options.pendingMaxBytes) {
      return Promise.reject(new ResourceExhaustedError(`${this.pendingBytes} bytes already wait for a group commit`))
    }
    return new Promise<PutResult>((resolve, reject) => {
      this.pending.push({ shards, bytes, result: { writtenCount: 0, existingCount: 0 }, resolve, reject })
      this.pendingBytes += bytes
      this.kickWriter()
    })
  }

  private kickWriter(): void {
    if (this.writing !== undefined) return
    this.writing = this.drainPending().finally(() => {
      this.writing = undefined
      if (this.pending.length > 0) this.kickWriter()
    })
  }

  /** One group commit at a time; everything that queued meanwhile shares the next fsync. */
  private async drainPending(): Promise<void> {
    while (this.pending.length > 0) {
      const group: PendingPut[] = []
      let groupBytes = 0
      while (this.pending.length > 0 && (group.length === 0 || groupBytes + (this.pending[0] as PendingPut).bytes <= this.options.groupCommitMaxBytes)) {
        const next = this.pending.shift() as PendingPut
        group.push(next)
        groupBytes += next.bytes
        this.pendingBytes -= next.bytes
      }
      try {
        await this.commitGroup(group)
        for (const put of group) put.resolve(put.result)
      } catch (err) {
        for (const put of group) put.reject(err)
      }
    }
  }

  /** Writes the group's new shards and fsyncs them; they wait for the index in memory. */
  private async commitGroup(group: readonly PendingPut[]): Promise<void> {
    const nowMs = this.options.nowMs()
    // By address hash: the records are built while the write is in flight (appendAndFsync).
    const planned = new Map<number, Shard | Shard[]>()
    const toWrite: PlannedWrite[] = []
    const touched: ShardAddress[] = []
    for (const put of group) {
      for (const shard of put.shards) {
        const hash = addressHash(shard.header.chunkCid, shard.header.index)
        if (plannedBefore(planned, hash, shard)) {
          put.result.existingCount += 1
          continue
        }
        // Already stored and fsynced (waiting records are never corrupt): a re-put only refreshes GC's clock.
        const waiting = this.unindexed.size > 0 ? this.unindexed.get(hash, shard.header.chunkCid, shard.header.index) : undefined
        // New data is the common case: the address map answers it without reading a row.
        const row = waiting === undefined && this.index.mayHold(hash) ? this.index.lookup(shard.header, hash) : undefined
        if (waiting === undefined && (row === undefined || row.corrupt)) {
          toWrite.push({ shard, hash, fresh: row === undefined })
          put.result.writtenCount += 1
          continue
        }
        if (waiting !== undefined) waiting.lastPutMs = Math.max(waiting.lastPutMs, nowMs)
        else touched.push(shard.header)
        put.result.existingCount += 1
      }
    }
    if (touched.length > 0) this.index.touchAll(touched, nowMs)
    if (toWrite.length > 0) await this.appendAndFsync(toWrite, nowMs)
  }

  /**
   * Appends the shards at the committed end of the active segment and fsyncs them (one
   * O_DSYNC writev). While it runs in the thread pool the main thread indexes earlier
   * groups (if enough wait) and builds this group's records, so neither costs the ack path
   * time; after it, making the records visible is a map insert each.
   */
  private async appendAndFsync(writes: readonly PlannedWrite[], nowMs: number): Promise<void> {
    // Bounded: if the worker falls behind, the writer waits for it rather than let records pile up.
    if (this.flusher?.busy === true && this.unindexed.size >= 8 * this.options.indexFlushRecords) await this.flusher.idle()
    let totalBytes = 0
    for (const w of writes) totalBytes += w.shard.bytes.length
    if (this.activeSizeBytes > 0 && this.activeSizeBytes + totalBytes > this.options.segmentSizeBytes) await this.rollSegment()
    const start = this.activeSizeBytes
    let records: WaitingRecord[]
    try {
      const stopTimer = this.components.metrics?.fsyncSeconds.startTimer()
      const written = writeAll(this.active, writes, start)
      const flushError = this.flushIndexIfDue()
      records = buildRecords(writes, start, nowMs)
      await written
      stopTimer?.()
      if (flushError !== undefined) throw flushError
    } catch (err) {
      // Nothing of this group is acknowledged; cut the tail so the next group starts at the committed size.
      await truncate(this.active.path, start).catch(() => undefined)
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new DiskFullError('no space left for shard data', { cause: err })
      throw err
    }
    for (const record of records) this.unindexed.add(record)
    this.activeSizeBytes = start + totalBytes
    this.counts.shards += writes.length
    this.counts.bytes += totalBytes
    this.updateGauges()
    this.scheduleIndexFlush()
  }

  /**
   * Flushes the waiting records if there are enough of them: hands them to the index
   * worker if it is free, else indexes them here. Returns a failure instead of throwing.
   */
  private flushIndexIfDue(): unknown {
    if (this.unindexed.size - this.flushing.length < this.options.indexFlushRecords) return undefined
    try {
      if (this.flusher?.usable === true) {
        // Busy: the records wait for the next group, and the worker is not queued behind.
        if (!this.flusher.busy) this.sendFlush(this.flusher)
      } else {
        this.flushIndex()
      }
      return undefined
    } catch (err) {
      return err
    }
  }

  /**
   * Hands every waiting record to the index worker in one request. The records stay in
   * `unindexed` until its commit is done (`flushed`). Every record past the committed size
   * waits, so the new committed size is activeSizeBytes.
   */
  private sendFlush(flusher: IndexFlusher): void {
    clearTimeout(this.indexTimer)
    this.indexTimer = undefined
    if (this.unindexed.size === 0) return
    const records = this.unindexed.toArray()
    // Replacing a row (a repair put over a corrupt copy) needs the address map, which only this thread has.
    if (records.some((r) => r.fresh !== true)) {
      this.flushIndex()
      return
    }
    this.flushing = records
    this.flushingSegment = this.active.id
    for (const record of records) record.sentLastPutMs = record.lastPutMs
    flusher.send(this.active.id, this.activeSizeBytes, packRecords(records))
  }

  /** The worker's answer to `sendFlush`: committed records leave `unindexed`; a failure leaves them for a retry. */
  private flushed(reply: FlushReply): void {
    const sent = this.flushing
    this.flushing = []
    if (!reply.ok) {
      this.components.logger.error({ errorName: reply.errorName, errorMessage: reply.errorMessage }, 'index worker failed to index acknowledged shards; retrying')
      this.scheduleIndexFlush()
      return
    }
    this.index.noteCommitted(this.flushingSegment, sent)
    const refreshed: ShardAddress[] = []
    let lastPutMs = 0
    for (const record of sent) {
      if (!this.unindexed.delete(record)) continue
      // Re-put while in flight: the worker committed the older time, so refresh the row.
      if (record.lastPutMs > record.sentLastPutMs) {
        refreshed.push({ chunkCid: record.cid, index: record.index })
        lastPutMs = Math.max(lastPutMs, record.lastPutMs)
      }
    }
    this.counts.shards -= reply.replaced.count
    this.counts.bytes -= reply.replaced.bytes
    this.counts.corrupt -= reply.replaced.corrupt
    this.updateGauges()
    try {
      // A later time than some of them had only delays GC; an earlier one could sweep a re-put shard.
      if (refreshed.length > 0 && this.index.open) this.index.touchAll(refreshed, lastPutMs)
    } catch (err) {
      this.components.logger.error({ err }, 'refreshing last-put times of re-put shards failed')
    }
    this.scheduleIndexFlush()
  }

  /**
   * Indexes every record waiting in memory: waits for the worker's flush in flight, then
   * commits the rest in one transaction on this thread (synchronous=NORMAL: a lost commit
   * is rolled forward from the segment on restart). Synchronous, so no put, read or
   * delete interleaves with it. Call before anything that reads the index as a whole or
   * changes rows.
   */
  flushIndex(): void {
    clearTimeout(this.indexTimer)
    this.indexTimer = undefined
    // First the worker's commit: committed sizes must advance in record order.
    this.flusher?.waitSync()
    if (this.unindexed.size === 0) return
    const replaced = this.index.commitWrites(this.active.id, this.activeSizeBytes, this.unindexed.toArray())
    this.unindexed.clear()
    this.counts.shards -= replaced.count
    this.counts.bytes -= replaced.bytes
    this.counts.corrupt -= replaced.corrupt
    this.updateGauges()
  }

  private scheduleIndexFlush(): void {
    if (this.indexTimer !== undefined || this.state === 'stopped' || this.unindexed.size === this.flushing.length) return
    this.indexTimer = setTimeout(() => {
      this.indexTimer = undefined
      try {
        const flusher = this.flusher
        if (flusher?.usable !== true) this.flushIndex()
        // A busy worker reschedules this when it answers (`flushed`).
        else if (!flusher.busy) this.sendFlush(flusher)
      } catch (err) {
        // The records stay waiting (and readable); the next flush retries them.
        this.components.logger.error({ err }, 'indexing acknowledged shards failed')
        this.scheduleIndexFlush()
      }
    }, this.options.indexFlushIntervalMs)
    this.indexTimer.unref()
  }

  /** The row of a shard: a record waiting for the index first, then the index. */
  private findRow(address: ShardAddress, hash?: number): ShardRow | undefined {
    if (this.unindexed.size > 0) {
      const r = this.unindexed.get(hash ?? addressHash(address.chunkCid, address.index), address.chunkCid, address.index)
      if (r !== undefined) {
        return { cid: asBuffer(r.cid), idx: r.index, segment: this.active.id, offset: r.offsetBytes, length: r.lengthBytes, lastPutMs: r.lastPutMs, corrupt: false }
      }
    }
    return this.index.lookup(address, hash)
  }

  /**
   * The id of a new segment (active or compaction output). Ids stay below SEGMENT_ID_LIMIT,
   * or a location (segment × 2^32 + offset) would no longer be an exact JS number.
   */
  allocateSegmentId(): number {
    if (this.nextSegmentId >= SEGMENT_ID_LIMIT) throw new DataDirError(`segment ids are exhausted (${SEGMENT_ID_LIMIT}); locations past them would lose precision`)
    return this.nextSegmentId++
  }

  /** Seals the active segment and starts the next: row first, then file, then directory fsync. */
  private async rollSegment(): Promise<void> {
    // The waiting records belong to the segment being sealed.
    this.flushIndex()
    const id = this.allocateSegmentId()
    this.index.rollSegment(this.active.id, id)
    const next = await SegmentFile.open(this.segmentsDir, id, true)
    await syncDirectory(this.segmentsDir)
    this.segments.set(id, next)
    this.active = next
    this.activeSizeBytes = 0
  }

  // ---- reads ----------------------------------------------------------------

  async getShard(address: ShardAddress): Promise<Shard> {
    return this.options.syncReads ? this.getShardNow(address) : this.getShardAsync(address)
  }

  /** The synchronous read path: lookup, pread, verify, with no await in between. */
  private getShardNow(address: ShardAddress): Shard {
    this.assertOpen()
    const hash = addressHash(address.chunkCid, address.index)
    // A hit proves the address valid (its bytes and index equal a stored shard's), so only a miss validates.
    const cached = address.chunkCid instanceof Uint8Array ? this.locations.get(hash, address.chunkCid, address.index) : undefined
    if (cached === undefined) validateAddress(address)
    const row = cached !== undefined ? { cid: cached.cid, idx: cached.index, segment: cached.segment, offset: cached.offset, length: cached.length, lastPutMs: 0, corrupt: false } : this.findRow(address, hash)
    if (row === undefined) throw new ShardNotFoundError(`no shard ${formatAddress(address)}`)
    if (row.corrupt) throw new ShardCorruptError(`shard ${formatAddress(address)} failed verification earlier`)
    // Nothing can retire a segment while this runs: compaction swaps segments between awaits.
    const segment = this.segments.get(row.segment)
    if (segment === undefined) throw new ShardReadError(`segment ${row.segment} of shard ${formatAddress(address)} is not open`)
    let bytes: Buffer
    try {
      bytes = segment.readNow(row.offset, row.length)
    } catch (err) {
      throw new ShardReadError(`reading shard ${formatAddress(address)} failed`, { cause: err })
    }
    const shard = this.verify(address, row, bytes)
    if (cached === undefined) this.locations.set(hash, row)
    return shard
  }

  /** Empties the read-path location cache: rows moved (compaction) or went. */
  forgetLocations(): void {
    this.locations.clear()
  }

  private async getShardAsync(address: ShardAddress): Promise<Shard> {
    this.assertOpen()
    validateAddress(address)
    // A compaction may move the shard between lookup and read; then look again.
    for (let attempt = 0; attempt < 3; attempt++) {
      const row = this.findRow(address)
      if (row === undefined) throw new ShardNotFoundError(`no shard ${formatAddress(address)}`)
      if (row.corrupt) throw new ShardCorruptError(`shard ${formatAddress(address)} failed verification earlier`)
      const segment = this.segments.get(row.segment)
      if (segment === undefined || !segment.acquire()) continue
      let bytes: Buffer
      try {
        bytes = await segment.read(row.offset, row.length)
      } catch (err) {
        throw new ShardReadError(`reading shard ${formatAddress(address)} failed`, { cause: err })
      } finally {
        segment.release()
      }
      return this.verify(address, row, bytes)
    }
    throw new ShardReadError(`shard ${formatAddress(address)} kept moving during compaction`)
  }

  /** Reads keep working while the store drains its writes, not after its files close. */
  private assertOpen(): void {
    if (this.state !== 'running' && this.state !== 'stopping') throw new ShuttingDownError('shard store is not open')
  }

  /** Decodes stored bytes and checks they are the shard asked for; anything else is corruption. */
  private verify(address: ShardAddress, row: ShardRow, bytes: Buffer): Shard {
    try {
      if (bytes.length !== row.length) throw new ShardCorruptError(`stored record is ${bytes.length} bytes, index says ${row.length}`)
      const shard = decodeShard(bytes)
      // chunkCid is a view of `bytes`, a Buffer: compare without wrapping either side.
      if (shard.header.index !== address.index || Buffer.compare(shard.header.chunkCid, address.chunkCid) !== 0) {
        throw new ShardCorruptError('stored record belongs to another shard')
      }
      return shard
    } catch (err) {
      this.recordCorrupt(row, err)
      throw err instanceof ShardCorruptError ? err : new ShardCorruptError(`stored shard ${formatAddress(address)} does not parse`, { cause: err })
    }
  }

  /** Flags a bad stored shard so it is reported absent and a repair's put replaces it. */
  recordCorrupt(row: ShardRow, cause: unknown, mark = true): void {
    this.locations.delete(addressHash(row.cid, row.idx))
    this.components.metrics?.badShards.inc()
    this.components.logger.error({ shard: formatAddress({ chunkCid: row.cid, index: row.idx }), segment: row.segment, offset: row.offset, err: cause }, 'stored shard failed verification')
    if (!mark || this.state !== 'running') return
    // The row may still wait in memory; the index must hold it before it can be flagged.
    this.flushIndex()
    if (this.index.markCorrupt(row)) this.counts.corrupt += 1
  }

  async getShards(addresses: readonly ShardAddress[]): Promise<GetResult[]> {
    if (this.options.syncReads) return addresses.map((a) => this.settle(() => this.getShardNow(a)))
    const results: GetResult[] = new Array(addresses.length)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < addresses.length) {
        const i = next++
        try {
          results[i] = { ok: true, shard: await this.getShard(addresses[i] as ShardAddress) }
        } catch (err) {
          if (!(err instanceof CairnError)) throw err
          results[i] = { ok: false, error: err }
        }
      }
    }
    const workers = Math.min(this.options.readConcurrency, addresses.length)
    await Promise.all(Array.from({ length: workers }, worker))
    return results
  }

  private settle(read: () => Shard): GetResult {
    try {
      return { ok: true, shard: read() }
    } catch (err) {
      if (!(err instanceof CairnError)) throw err
      return { ok: false, error: err }
    }
  }

  async hasShards(addresses: readonly ShardAddress[]): Promise<boolean[]> {
    return addresses.map((a) => {
      validateAddress(a)
      const row = this.findRow(a)
      return row !== undefined && !row.corrupt
    })
  }

  // ---- deletes, listing, stats ----------------------------------------------

  async deleteShards(addresses: readonly ShardAddress[], options: DeleteOptions = {}): Promise<number> {
    if (this.state !== 'running') throw new ShuttingDownError('shard store is not running')
    for (const a of addresses) validateAddress(a)
    const cutoff = options.lastPutBeforeUnixMs ?? Number.MAX_SAFE_INTEGER
    this.flushIndex()
    const gone = this.index.deleteShards(addresses, cutoff)
    for (const a of addresses) this.locations.delete(addressHash(a.chunkCid, a.index))
    this.counts.shards -= gone.count
    this.counts.bytes -= gone.bytes
    this.counts.corrupt -= gone.corrupt
    this.updateGauges()
    return gone.count
  }

  async listShards(options: ListOptions = {}): Promise<ListPage> {
    const pageSize = options.pageSize ?? this.options.listPageSizeDefault
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new PageTokenError(`bad page size ${pageSize}`)
    const limit = Math.min(pageSize, this.options.listPageSizeMax)
    const afterLoc = options.pageToken === undefined || options.pageToken === '' ? undefined : decodePageToken(options.pageToken)
    if (this.state === 'running') this.flushIndex()
    const { rows, scannedThrough } = this.index.list(afterLoc, options.cidPrefix, limit + 1, this.options.listScanRowsMax)
    const page = rows.slice(0, limit)
    const shards = page.map(toShardInfo)
    const last = page[page.length - 1]
    if (rows.length > limit && last !== undefined) return { shards, nextPageToken: encodePageToken(locationOf(last.segment, last.offset)) }
    // A prefix listing whose scan window ended before the index did: a short page, and more to walk.
    return scannedThrough === undefined ? { shards } : { shards, nextPageToken: encodePageToken(scannedThrough) }
  }

  async chunkShards(chunkCid: Uint8Array): Promise<ShardInfo[]> {
    this.assertOpen()
    validateAddress({ chunkCid, index: 0 })
    const rows: ShardRow[] = []
    const hashOfCid = cidHash(chunkCid)
    for (let index = 0; index < MAX_TOTAL_SHARDS; index++) {
      const row = this.findRow({ chunkCid, index }, addressHashOf(hashOfCid, index))
      if (row !== undefined) rows.push(row)
    }
    return rows.sort((a, b) => locationOf(a.segment, a.offset) - locationOf(b.segment, b.offset)).map(toShardInfo)
  }

  async stats(): Promise<StoreStats> {
    if (this.state === 'running') this.flushIndex()
    const segments = this.index.segments()
    return {
      shardCount: this.counts.shards,
      shardBytes: this.counts.bytes,
      segmentCount: segments.length,
      segmentBytes: segments.reduce((sum, s) => sum + s.sizeBytes, 0),
      corruptShardCount: this.counts.corrupt,
    }
  }

  private updateGauges(): void {
    this.components.metrics?.shards.set(this.counts.shards)
    this.components.metrics?.shardBytes.set(this.counts.bytes)
    if (this.index.open) this.components.metrics?.addressMapBytes.set(this.index.addressMapBytes)
  }

  // ---- compaction -----------------------------------------------------------

  /** Compacts the emptiest eligible segment, if any; resolves whether one was compacted. */
  compactOnce(): Promise<boolean> {
    if (this.state !== 'running') return Promise.resolve(false)
    if (this.compacting !== undefined) return this.compacting.then(() => this.compactOnce())
    const candidate = pickCompactionCandidate(this.index.segments(), this.options.compactionLiveRatio)
    if (candidate === undefined) return Promise.resolve(false)
    const run = compactSegment(this, candidate).then(() => true)
    this.compacting = run.finally(() => {
      this.compacting = undefined
    })
    return run
  }

  private scheduleCompaction(): void {
    if (this.options.compactionIntervalMs <= 0 || this.state !== 'running') return
    this.compactTimer = setTimeout(() => {
      this.compactOnce()
        .catch((err: unknown) => this.components.logger.error({ err }, 'compaction failed'))
        .finally(() => this.scheduleCompaction())
    }, this.options.compactionIntervalMs)
    this.compactTimer.unref()
  }
}

/**
 * Whether a shard with the same address is already in `planned` (by hash, then bytes);
 * adds it if not. A hash holds one shard, or an array only after a collision: no array
 * per shard.
 */
function plannedBefore(planned: Map<number, Shard | Shard[]>, hash: number, shard: Shard): boolean {
  const same = planned.get(hash)
  if (same === undefined) {
    planned.set(hash, shard)
    return false
  }
  const list = Array.isArray(same) ? same : [same]
  const { chunkCid, index } = shard.header
  if (list.some((s) => s.header.index === index && Buffer.compare(s.header.chunkCid, chunkCid) === 0)) return true
  list.push(shard)
  if (list !== same) planned.set(hash, list)
  return false
}

/** The waiting-index records of shards written back to back from `startBytes`. */
function buildRecords(writes: readonly PlannedWrite[], startBytes: number, nowMs: number): WaitingRecord[] {
  let offset = startBytes
  return writes.map(({ shard, hash, fresh }) => {
    const { chunkCid, index } = shard.header
    const record: WaitingRecord = { cid: chunkCid, index, offsetBytes: offset, lengthBytes: shard.bytes.length, lastPutMs: nowMs, fresh, hash, sentLastPutMs: 0, next: undefined }
    offset += shard.bytes.length
    return record
  })
}

/** Writes the shards durably at `positionBytes`: when this resolves they survive power loss. */
async function writeAll(segment: SegmentFile, writes: readonly PlannedWrite[], positionBytes: number): Promise<void> {
  // writev takes at most IOV_MAX (1024) buffers per call on Linux; each call is one sync.
  let position = positionBytes
  for (let i = 0; i < writes.length; i += 1024) {
    const slice = writes.slice(i, i + 1024).map((w) => w.shard.bytes)
    const expected = slice.reduce((sum, b) => sum + b.length, 0)
    const bytesWritten = await segment.writeDurably(slice, position)
    if (bytesWritten !== expected) throw new DataDirError(`short write to segment ${segment.id}: ${bytesWritten} of ${expected} bytes`)
    position += expected
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err
}

function toShardInfo(r: ShardRow): ShardInfo {
  return { address: { chunkCid: new Uint8Array(r.cid), index: r.idx }, sizeBytes: r.length, lastPutUnixMs: r.lastPutMs, corrupt: r.corrupt, position: locationOf(r.segment, r.offset) }
}

/** A page token is the location the next page starts after: listing runs in location order. */
function encodePageToken(loc: number): string {
  const { segment, offset } = splitLocation(loc)
  return `2.${segment}.${offset}`
}

function decodePageToken(token: string): number {
  const match = /^2\.(\d{1,7})\.(\d{1,10})$/.exec(token)
  const segment = Number(match?.[1])
  const offset = Number(match?.[2])
  if (!match || segment >= SEGMENT_ID_LIMIT || offset >= SEGMENT_STRIDE) throw new PageTokenError('page token was not issued by this store')
  return locationOf(segment, offset)
}
