/**
 * One volume incarnation's journal replica: the epoch fence, the checkpoint, and
 * the append-only record log with group commit (records are written as they
 * arrive; one fsync then covers every record written before it started).
 *
 * Every mutation and every read of segment files runs under one per-volume lock,
 * in arrival order, so a fence raised by Open is seen by every request queued
 * behind it. Only the fsync runs outside the lock, so appends keep flowing into
 * the page cache while the previous group commits.
 */
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../core/logger.js'
import { assert } from '../../core/errors.js'
import type { JournalMetrics } from '../metrics.js'
import { syncDirectory } from '../segment-file.js'
import { EpochFencedError, JournalConflictError, JournalCorruptError, JournalDroppedError, JournalNotOpenError, JournalSequenceError } from './errors.js'
import { emptyState, listSegments, loadSegments, readState, segmentName, writeState, type CheckpointState, type JournalStateFile, type SegmentInfo } from './journal-files.js'
import { decodeRecord, decodeRecordHeader, encodeRecord, recordIntact, RECORD_HEADER_BYTES, sameRecord, type StoredRecord } from './record.js'

export interface VolumeLogOptions {
  /** A segment is closed and a new one started once it would pass this size. */
  segmentSizeBytes: number
}

export interface VolumeLogComponents {
  logger: Logger
  metrics?: JournalMetrics
}

export class VolumeLog {
  /** Streams and calls using this volume; it is only evicted at 0. */
  refs = 0
  lastUsedMs = 0
  private segments: SegmentInfo[] = []
  private active: FileHandle | undefined
  private writtenSeq = 0
  private durableSeq = 0
  private syncing: Promise<void> | undefined
  private lock: Promise<unknown> = Promise.resolve()
  private closed = false

  private constructor(
    readonly volumeUid: string,
    private readonly dir: string,
    private state: JournalStateFile,
    private readonly options: VolumeLogOptions,
    private readonly components: VolumeLogComponents,
  ) {}

  /** Loads the volume's directory under `root` (absent: a journal never opened), repairing a torn tail. */
  static async load(root: string, volumeUid: string, options: VolumeLogOptions, components: VolumeLogComponents): Promise<VolumeLog> {
    const dir = join(root, volumeUid)
    const state = await readState(dir)
    const log = new VolumeLog(volumeUid, dir, state ?? emptyState(), options, components)
    if (state === undefined || state.dropped) return log
    const before = await diskBytesOf(dir)
    log.segments = await loadSegments(dir, components.logger.child({ volumeUid }))
    components.metrics?.journalDiskBytes.dec(before - log.segmentBytes())
    const last = log.segments.at(-1)
    if (last !== undefined) {
      log.active = await open(last.path, 'r+')
      // After a process crash the page cache may still hold unsynced records; make them durable before acknowledging any.
      await log.active.sync()
    }
    log.writtenSeq = log.lastSeq()
    log.durableSeq = log.writtenSeq
    return log
  }

  /** Runs `work` after every earlier locked operation on this volume. */
  private locked<T>(work: () => Promise<T>): Promise<T> {
    const run = this.lock.then(() => {
      if (this.closed) throw new JournalNotOpenError(`journal of volume ${this.volumeUid} is closed`)
      return work()
    })
    this.lock = run.catch(() => undefined)
    return run
  }

  highestEpoch(): number {
    return this.state.highestEpoch
  }

  checkpoint(): CheckpointState | null {
    return this.state.checkpoint
  }

  /** Highest stored seq, 0 when the log holds none. */
  lastSeq(): number {
    return this.segments.at(-1)?.lastSeq ?? 0
  }

  private nextSeq(): number {
    return Math.max(this.lastSeq(), this.state.checkpoint?.seq ?? 0) + 1
  }

  /** Highest seq this replica can vouch for: fsynced, or covered by the durable checkpoint. */
  acknowledgedSeq(): number {
    return Math.max(this.durableSeq, this.state.checkpoint?.seq ?? 0)
  }

  private segmentBytes(): number {
    return this.segments.reduce((sum, s) => sum + s.sizeBytes, 0)
  }

  /** The fence for every call but Open: the caller's epoch must be the one the journal was opened at. */
  private checkEpoch(epoch: number): void {
    if (this.state.dropped) throw new JournalDroppedError(`journal of volume ${this.volumeUid} was dropped`)
    if (epoch < this.state.highestEpoch) {
      this.components.metrics?.journalFencedRequests.inc()
      throw new EpochFencedError(`volume ${this.volumeUid}: epoch ${epoch} is fenced by epoch ${this.state.highestEpoch}`)
    }
    if (epoch > this.state.highestEpoch) throw new JournalNotOpenError(`volume ${this.volumeUid}: epoch ${epoch} was never opened here; call Open first`)
  }

  /** Raises the fence to `epoch` durably (an equal epoch is a re-open), then makes every written record durable. */
  open(epoch: number): Promise<{ checkpoint: CheckpointState | null; lastSeq: number }> {
    return this.locked(async () => {
      if (this.state.dropped) throw new JournalDroppedError(`journal of volume ${this.volumeUid} was dropped`)
      if (epoch < this.state.highestEpoch) {
        this.components.metrics?.journalFencedRequests.inc()
        throw new EpochFencedError(`volume ${this.volumeUid}: epoch ${epoch} is fenced by epoch ${this.state.highestEpoch}`)
      }
      if (epoch > this.state.highestEpoch) {
        await mkdir(this.dir, { recursive: true })
        await syncDirectory(join(this.dir, '..'))
        await this.persist({ ...this.state, highestEpoch: epoch })
      }
      // The new owner recovers from what this replica returns, so it must not be able to vanish in a crash.
      await this.syncThrough(this.writtenSeq)
      return { checkpoint: this.state.checkpoint, lastSeq: this.lastSeq() }
    })
  }

  private async persist(next: JournalStateFile): Promise<void> {
    await writeState(this.dir, next)
    this.state = next
  }

  /**
   * Writes the records that extend the log; skips exact repeats and records the
   * checkpoint already covers. A gap or a changed repeat fails, after the records
   * before it were written.
   * @returns the highest seq the caller must wait to be durable.
   */
  append(epoch: number, records: readonly StoredRecord[]): Promise<number> {
    return this.locked(async () => {
      this.checkEpoch(epoch)
      let pending: Buffer[] = []
      let pendingLast = { seq: 0, epoch: 0 }
      let waitSeq = 0
      // Clears `pending` before writing, so a failed write is never retried by the finally below.
      const flush = async (): Promise<void> => {
        const batch = pending
        pending = []
        if (batch.length > 0) await this.flushPending(batch, pendingLast.seq, pendingLast.epoch)
      }
      try {
        for (const record of records) {
          const next = this.nextSeq() + pending.length
          if (record.seq < next) {
            await flush()
            await this.checkRepeat(record)
            waitSeq = Math.max(waitSeq, Math.min(record.seq, this.lastSeq()))
            continue
          }
          if (record.seq > next) throw new JournalSequenceError(`volume ${this.volumeUid}: seq ${record.seq} leaves a gap; expected ${next}`)
          const prevEpoch = pending.length > 0 ? pendingLast.epoch : (this.segments.at(-1)?.lastEpoch ?? 0)
          if (record.epoch < prevEpoch) throw new JournalConflictError(`volume ${this.volumeUid}: seq ${record.seq} has epoch ${record.epoch} below the previous record's ${prevEpoch}`)
          const bytes = encodeRecord(record)
          if (this.mustRoll(pending, bytes.length)) {
            await flush()
            await this.roll(record.seq)
          }
          pending.push(bytes)
          pendingLast = { seq: record.seq, epoch: record.epoch }
          waitSeq = record.seq
        }
      } finally {
        await flush()
      }
      return waitSeq
    })
  }

  /** A seq below the next one: covered by the checkpoint, or it must equal the stored record. */
  private async checkRepeat(record: StoredRecord): Promise<void> {
    if (record.seq <= (this.state.checkpoint?.seq ?? 0)) return
    const [stored] = await this.readRange(record.seq, record.seq, Number.MAX_SAFE_INTEGER)
    assert(stored !== undefined && stored.seq === record.seq, `volume ${this.volumeUid}: stored seq ${record.seq} not found`)
    if (!sameRecord(stored, record)) throw new JournalConflictError(`volume ${this.volumeUid}: seq ${record.seq} is stored with different content`)
  }

  private mustRoll(pending: readonly Buffer[], recordBytes: number): boolean {
    const seg = this.segments.at(-1)
    if (seg === undefined || this.active === undefined) return true
    const pendingBytes = pending.reduce((sum, b) => sum + b.length, 0)
    const hasRecords = seg.offsets.length + pending.length > 0
    return hasRecords && seg.sizeBytes + pendingBytes + recordBytes > this.options.segmentSizeBytes
  }

  /** Appends encoded records to the active segment (one write call) and indexes them. */
  private async flushPending(pending: readonly Buffer[], lastSeq: number, lastEpoch: number): Promise<void> {
    const seg = this.segments.at(-1)
    assert(seg !== undefined && this.active !== undefined, 'flush without an active segment')
    let offset = seg.sizeBytes
    const offsets: number[] = []
    for (const b of pending) {
      offsets.push(offset)
      offset += b.length
    }
    const bytes = offset - seg.sizeBytes
    await this.active.writev(pending as Buffer[], seg.sizeBytes)
    seg.offsets.push(...offsets)
    seg.sizeBytes = offset
    assert(lastSeq === seg.lastSeq + pending.length, `volume ${this.volumeUid}: seq ${lastSeq} out of order`)
    seg.lastSeq = lastSeq
    seg.lastEpoch = lastEpoch
    this.writtenSeq = lastSeq
    this.components.metrics?.journalAppends.inc(pending.length)
    this.components.metrics?.journalAppendBytes.inc(bytes)
    this.components.metrics?.journalDiskBytes.inc(bytes)
  }

  /** Seals the active segment (fsynced, so the next group commit needs only the new file) and creates one starting at `firstSeq`. */
  private async roll(firstSeq: number): Promise<void> {
    await this.syncing
    if (this.active !== undefined) {
      await this.active.datasync()
      await this.active.close()
      this.active = undefined
      this.durableSeq = this.writtenSeq
    }
    const path = join(this.dir, segmentName(firstSeq))
    this.active = await open(path, 'wx+')
    await syncDirectory(this.dir)
    this.segments.push({ firstSeq, lastSeq: firstSeq - 1, lastEpoch: 0, path, sizeBytes: 0, offsets: [] })
  }

  /** Resolves once every record up to `seq` (clipped to what was written) is fsynced; concurrent callers share one fsync. */
  async syncThrough(seq: number): Promise<void> {
    while (this.durableSeq < Math.min(seq, this.writtenSeq)) {
      this.syncing ??= this.groupCommit().finally(() => {
        this.syncing = undefined
      })
      await this.syncing
    }
  }

  private async groupCommit(): Promise<void> {
    const target = this.writtenSeq
    const handle = this.active
    const stop = this.components.metrics?.journalFsyncSeconds.startTimer()
    if (handle !== undefined) await handle.datasync()
    stop?.()
    this.durableSeq = Math.max(this.durableSeq, target)
  }

  /** Stores a checkpoint newer than the current one durably, then deletes the segments it fully covers. */
  setCheckpoint(epoch: number, checkpoint: CheckpointState): Promise<CheckpointState> {
    return this.locked(async () => {
      this.checkEpoch(epoch)
      const current = this.state.checkpoint
      if (current !== null && checkpoint.seq < current.seq) return current
      await this.persist({ ...this.state, checkpoint })
      await this.trim(checkpoint.seq)
      return checkpoint
    })
  }

  /** Deletes whole segments whose every record is ≤ seq; a partly covered segment stays. */
  private async trim(seq: number): Promise<void> {
    let removed = 0
    while (this.segments.length > 0 && (this.segments[0] as SegmentInfo).lastSeq <= seq) {
      const seg = this.segments.shift() as SegmentInfo
      if (this.segments.length === 0 && this.active !== undefined) {
        await this.syncing
        await this.active.close()
        this.active = undefined
      }
      await unlink(seg.path)
      removed += seg.sizeBytes
    }
    if (removed > 0) {
      await syncDirectory(this.dir)
      this.components.metrics?.journalDiskBytes.dec(removed)
    }
  }

  /** Records with seq in [fromSeq, toSeq] after the checkpoint, stopping after about `maxBytes`; verified against their CRC. */
  read(epoch: number, fromSeq: number, toSeq: number, maxBytes: number): Promise<StoredRecord[]> {
    return this.locked(async () => {
      this.checkEpoch(epoch)
      return this.readRange(Math.max(fromSeq, (this.state.checkpoint?.seq ?? 0) + 1), Math.min(toSeq, this.lastSeq()), maxBytes)
    })
  }

  private async readRange(fromSeq: number, toSeq: number, maxBytes: number): Promise<StoredRecord[]> {
    const seg = this.segments.find((s) => s.firstSeq <= fromSeq && fromSeq <= s.lastSeq)
    if (seg === undefined || fromSeq > toSeq) return []
    const start = seg.offsets[fromSeq - seg.firstSeq] as number
    let lastSeq = Math.min(toSeq, seg.lastSeq)
    // Always at least one record, then as many as fit in maxBytes.
    for (let s = fromSeq + 1; s <= lastSeq; s++) {
      if ((seg.offsets[s - seg.firstSeq] as number) - start > maxBytes) {
        lastSeq = s - 1
        break
      }
    }
    const end = lastSeq < seg.lastSeq ? (seg.offsets[lastSeq + 1 - seg.firstSeq] as number) : seg.sizeBytes
    const fh = await open(seg.path, 'r')
    const bytes = Buffer.allocUnsafe(end - start)
    try {
      const { bytesRead } = await fh.read(bytes, 0, bytes.length, start)
      if (bytesRead !== bytes.length) throw new JournalCorruptError(`${seg.path}: short read at ${start}`)
    } finally {
      await fh.close()
    }
    return decodeRange(bytes, fromSeq, lastSeq, seg.path)
  }

  /** Deletes every segment and leaves a tombstone with the highest epoch. */
  drop(epoch: number): Promise<void> {
    return this.locked(async () => {
      if (this.state.dropped) return
      if (epoch < this.state.highestEpoch) {
        this.components.metrics?.journalFencedRequests.inc()
        throw new EpochFencedError(`volume ${this.volumeUid}: epoch ${epoch} is fenced by epoch ${this.state.highestEpoch}`)
      }
      await mkdir(this.dir, { recursive: true })
      await syncDirectory(join(this.dir, '..'))
      await this.persist({ version: 1, highestEpoch: Math.max(epoch, this.state.highestEpoch), checkpoint: null, dropped: true })
      await this.trim(Number.MAX_SAFE_INTEGER)
    })
  }

  /** Waits for queued work and closes the active segment; later calls fail. */
  close(): Promise<void> {
    const done = this.locked(async () => {
      await this.syncing
      this.closed = true
      await this.active?.close()
      this.active = undefined
    })
    return done.catch(() => undefined)
  }
}

function decodeRange(bytes: Buffer, fromSeq: number, toSeq: number, path: string): StoredRecord[] {
  const records: StoredRecord[] = []
  let offset = 0
  for (let seq = fromSeq; seq <= toSeq; seq++) {
    const header = decodeRecordHeader(bytes.subarray(offset, offset + RECORD_HEADER_BYTES))
    const end = offset + RECORD_HEADER_BYTES + (header?.payloadBytes ?? 0)
    if (header === undefined || header.seq !== seq || end > bytes.length) throw new JournalCorruptError(`${path}: record ${seq} is damaged`)
    const whole = bytes.subarray(offset, end)
    if (!recordIntact(whole, header)) throw new JournalCorruptError(`${path}: record ${seq} fails its CRC32C`)
    records.push(decodeRecord(whole, header))
    offset = end
  }
  return records
}

async function diskBytesOf(dir: string): Promise<number> {
  let total = 0
  for (const firstSeq of await listSegments(dir)) {
    const fh = await open(join(dir, segmentName(firstSeq)), 'r')
    total += (await fh.stat()).size
    await fh.close()
  }
  return total
}
