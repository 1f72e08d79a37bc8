/**
 * An in-memory VolumeJournal for engine tests. `MemoryJournalReplicas` plays the
 * replicas (what survives a crash: the epoch, the checkpoint and the durable
 * records); each `MemoryJournal` is one engine's client. Records become durable
 * by group commit (on the next turn of the event loop, or after a delay, so tests
 * can crash with acknowledged but unsynced writes). Test infrastructure only.
 */
import { CairnError } from '../../../core/errors.js'
import { EpochFencedError } from '../../../control-plane/types.js'
import type { AppendedRecord, JournalCheckpoint, JournalOp, JournalRecord, VolumeJournal } from '../../contracts.js'
import type { JournalFactory, JournalFactoryInit } from '../attach.js'

/** The client was crashed by the test, or closed: it can do nothing more. */
export class FakeJournalClosedError extends CairnError {
  override readonly name = 'JournalClosedError'
  readonly kind = 'unavailable'
}

/** An injected append failure. */
export class FakeJournalWriteError extends CairnError {
  override readonly name = 'JournalWriteError'
  readonly kind = 'unavailable'
}

/** What the replicas of one volume incarnation hold durably. */
export interface ReplicaState {
  epoch: number
  checkpoint: JournalCheckpoint | null
  /** Durable records after the checkpoint, in seq order. */
  records: JournalRecord[]
  /** Highest seq ever made durable (survives trimming). */
  lastSeq: number
}

export interface MemoryJournalOptions {
  /**
   * Time from an append to its group commit, as replicas batching fsyncs would;
   * records appended within it are lost if the client crashes first.
   * @default 0 (the next turn of the event loop)
   */
  commitDelayMs?: number
  /** Records accepted but not yet durable before append waits. @default 1024 */
  windowRecords?: number
}

export class MemoryJournalReplicas {
  readonly volumes = new Map<string, ReplicaState>()
  /** Every client made, newest last. */
  readonly clients: MemoryJournal[] = []

  constructor(private readonly options: MemoryJournalOptions = {}) {}

  state(volumeUid: string): ReplicaState {
    let s = this.volumes.get(volumeUid)
    if (s === undefined) {
      s = { epoch: 0, checkpoint: null, records: [], lastSeq: 0 }
      this.volumes.set(volumeUid, s)
    }
    return s
  }

  readonly factory: JournalFactory = (init) => {
    const client = new MemoryJournal(init, this.state(init.volumeUid), this.options)
    this.clients.push(client)
    return client
  }
}

interface Pending {
  record: JournalRecord
  resolve: () => void
  reject: (err: unknown) => void
}

export class MemoryJournal implements VolumeJournal {
  private nextSeq = 0
  private pending: Pending[] = []
  private windowWaiters: (() => void)[] = []
  private commitScheduled = false
  private commitTimer: NodeJS.Timeout | undefined
  private dead: Error | undefined
  /** Failures to inject into the next appends. */
  failAppends = 0
  checkpoints = 0

  constructor(
    private readonly init: JournalFactoryInit,
    private readonly state: ReplicaState,
    private readonly options: MemoryJournalOptions,
  ) {}

  async open(): Promise<{ checkpoint: JournalCheckpoint | null; records: JournalRecord[] }> {
    this.check()
    this.state.epoch = this.init.epoch
    this.nextSeq = this.state.lastSeq + 1
    return { checkpoint: this.state.checkpoint, records: this.state.records.map((r) => ({ seq: r.seq, op: r.op })) }
  }

  async append(op: JournalOp): Promise<AppendedRecord> {
    this.check()
    while (this.pending.length >= (this.options.windowRecords ?? 1024)) {
      await new Promise<void>((resolve) => this.windowWaiters.push(resolve))
      this.check()
    }
    if (this.failAppends > 0) {
      this.failAppends--
      throw new FakeJournalWriteError('injected append failure')
    }
    const copy: JournalOp = op.kind === 'write' ? { ...op, data: Uint8Array.from(op.data) } : { ...op }
    const record = { seq: this.nextSeq++, op: copy }
    const durable = new Promise<void>((resolve, reject) => this.pending.push({ record, resolve, reject }))
    durable.catch(() => undefined)
    this.scheduleCommit()
    return { seq: record.seq, durable }
  }

  async sync(): Promise<void> {
    this.check()
    this.commit()
  }

  async checkpoint(checkpoint: JournalCheckpoint): Promise<void> {
    this.check()
    if (this.state.checkpoint !== null && checkpoint.seq < this.state.checkpoint.seq) return
    this.state.checkpoint = { ...checkpoint }
    this.state.records = this.state.records.filter((r) => r.seq > checkpoint.seq)
    this.checkpoints++
  }

  replicas(): readonly string[] {
    return this.init.replicas
  }

  async close(): Promise<void> {
    if (this.dead !== undefined) return
    if (this.state.epoch === this.init.epoch) this.commit()
    this.kill(new FakeJournalClosedError('journal closed'))
  }

  /** Makes every accepted record durable (group commit); fenced clients lose them. */
  commit(): void {
    if (this.dead !== undefined) return
    // This commit covers what the scheduled one would have: cancel it, so no timer outlives its records.
    this.cancelScheduledCommit()
    const batch = this.pending
    this.pending = []
    for (const w of this.windowWaiters.splice(0)) w()
    if (this.state.epoch > this.init.epoch) {
      const err = this.fencedError()
      for (const p of batch) p.reject(err)
      return
    }
    for (const p of batch) {
      this.state.records.push(p.record)
      this.state.lastSeq = p.record.seq
      p.resolve()
    }
  }

  /** The engine's node died: records not yet durable are gone, and the client never answers again. */
  crash(): void {
    this.kill(new FakeJournalClosedError('journal client crashed'))
  }

  /** Records accepted but not durable. */
  get pendingCount(): number {
    return this.pending.length
  }

  private kill(err: Error): void {
    this.dead = err
    this.cancelScheduledCommit()
    for (const p of this.pending.splice(0)) p.reject(err)
    for (const w of this.windowWaiters.splice(0)) w()
  }

  private cancelScheduledCommit(): void {
    clearTimeout(this.commitTimer)
    this.commitTimer = undefined
    this.commitScheduled = false
  }

  private scheduleCommit(): void {
    if (this.commitScheduled) return
    this.commitScheduled = true
    const run = () => {
      this.commitScheduled = false
      this.commit()
    }
    const delayMs = this.options.commitDelayMs ?? 0
    if (delayMs === 0) setImmediate(run)
    else this.commitTimer = setTimeout(run, delayMs)
  }

  private check(): void {
    if (this.dead !== undefined) throw this.dead
    if (this.state.epoch > this.init.epoch) throw this.fencedError()
  }

  private fencedError(): EpochFencedError {
    return new EpochFencedError(this.init.volumeName, this.init.epoch, this.state.epoch)
  }
}
