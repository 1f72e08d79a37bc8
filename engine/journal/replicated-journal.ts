/**
 * ReplicatedJournal: a volume's VolumeJournal over N storage-node replicas for
 * one (volumeUid, epoch). Every record goes to every replica; a record is durable
 * once all current replicas acknowledged its fsync. A replica that fails is
 * replaced by a new member, which gets the latest checkpoint and every record
 * kept since it; an EpochFencedError from any replica ends this journal for good.
 * Design and failure reasoning: docs/adr/0009-journal.md.
 */
import type { Logger } from '../../core/logger.js'
import { CairnError, InvalidArgumentError, ResourceExhaustedError, ShuttingDownError, assert } from '../../core/errors.js'
import { silentLogger } from '../../core/logger.js'
import type { AppendedRecord, JournalCheckpoint, JournalOp, JournalRecord, VolumeJournal } from '../contracts.js'
import { JournalClient, type OpenedReplica } from '../../storage-node/journal/journal-client.js'
import { sameRecord, type StoredRecord } from '../../storage-node/journal/record.js'
import { EpochFencedError, JournalUnavailableError } from './errors.js'
import { decodeOp, encodeOp } from './op-codec.js'

/**
 * Memory bounds of a journal client. Retained records are a second copy of what the dirty
 * map holds until the checkpoint, so the retained bound is kept below the dirty map's:
 * together they were most of a 700 MiB engine (ADR 0009, 2026-11-22).
 */
export const JOURNAL_MEMORY_DEFAULTS = { windowBytes: 12 * 1024 * 1024, retainedBytesMax: 32 * 1024 * 1024, messageBytesMax: 4 * 1024 * 1024 } as const

/** A storage node that can hold a journal replica. */
export interface JournalMember {
  id: string
  /** `host:port` of its gRPC listener. */
  address: string
}

export interface ReplicatedJournalInit {
  volumeUid: string
  epoch: number
  /** The replica set recorded for the volume (policy's journalReplicas members). */
  replicas: readonly JournalMember[]
  /** Record bytes sent but not yet durable before `append` waits; every replica's stream holds serialized copies of them. @default 12582912 (12 MiB) */
  windowBytes?: number
  /** Records sent but not yet durable before `append` waits. @default 4096 */
  windowRecords?: number
  /** Bytes of records kept for replacements until a checkpoint covers them; past it `append` waits for a checkpoint. @default 33554432 (32 MiB) */
  retainedBytesMax?: number
  /** `append` calls waiting for room at once; more fail with ResourceExhaustedError. @default 4096 */
  admissionQueueMax?: number
  /** How long durability may wait for a replica to be replaced (and a checkpoint for every replica) before JournalUnavailableError. @default 30000 */
  replaceTimeoutMs?: number
  /** A replica that acknowledges nothing for this long while records are outstanding is replaced. @default 15000 */
  ackTimeoutMs?: number
  /** Most record bytes per Append message (a larger record goes alone). @default 1048576 (1 MiB) */
  messageBytesMax?: number
  /**
   * Append messages one replica may have unacknowledged; records admitted meanwhile
   * wait and leave together in the next message once an ack frees room. Coalescing
   * is what keeps a replica's per-message work (decode, lock, write, ack) from
   * growing with the request rate: one message per record cost 5× the FLUSH latency
   * under load; one in flight beat two or four (ADR 0009, 2026-11-22).
   * @default 1
   */
  messagesInFlightMax?: number
}

export interface ReplicatedJournalComponents {
  /** A live member not in `excludedIds` to replace a failed replica (the engine picks by placement), or undefined if none is left. */
  pickReplacement(excludedIds: readonly string[]): Promise<JournalMember | undefined> | JournalMember | undefined
  /** The replica set changed; the engine records it in the control plane. */
  onReplicasChanged(ids: readonly string[]): void | Promise<void>
  /** @default a plaintext JournalClient to `member.address` */
  connect?: (member: JournalMember) => JournalClient
  logger?: Logger
}

interface Slot {
  member: JournalMember
  client: JournalClient
  stream: ReturnType<JournalClient['openAppendStream']> | undefined
  live: boolean
  /** Bumped on every (re)activation; callbacks from an older generation are ignored. */
  generation: number
  /** Highest seq sent to the current member / acknowledged durable by it. */
  sentSeq: number
  ackedSeq: number
  /** Last seq of each message sent to the current member and not yet acknowledged, oldest first. */
  inFlight: number[]
  /** Seq of the checkpoint the current member confirmed. */
  checkpointSeq: number
  /** The member lacks our checkpoint: records after it would be a gap until it has it. */
  awaitingCheckpoint: boolean
  lastProgressMs: number
}

interface Waiter {
  seq: number
  resolve: () => void
  reject: (err: unknown) => void
}

interface Admission {
  record: StoredRecord
  durable: Promise<void>
  resolve: (r: AppendedRecord) => void
  reject: (err: unknown) => void
}

const noop = (): void => undefined

export class ReplicatedJournal implements VolumeJournal {
  private readonly opts: Required<Omit<ReplicatedJournalInit, 'volumeUid' | 'epoch' | 'replicas'>>
  private readonly logger: Logger
  private slots: Slot[] = []
  private readonly failedIds = new Set<string>()
  /** Admitted records with seq > checkpoint seq, contiguous, in seq order. */
  private retained: StoredRecord[] = []
  private retainedBytes = 0
  private latestCheckpoint: JournalCheckpoint | null = null
  private nextSeq = 1
  private admittedSeq = 0
  private durableSeq = 0
  private unackedBytes = 0
  private readonly admissions: Admission[] = []
  private waiters: Waiter[] = []
  private readonly listeners = new Set<() => void>()
  private failure: CairnError | undefined
  private opened = false
  private flushScheduled = false
  private ackTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly init: ReplicatedJournalInit,
    private readonly components: ReplicatedJournalComponents,
  ) {
    if (!Number.isSafeInteger(init.epoch) || init.epoch < 1) throw new InvalidArgumentError(`bad epoch ${init.epoch}`)
    if (init.replicas.length < 1) throw new InvalidArgumentError('a journal needs at least one replica')
    if (new Set(init.replicas.map((m) => m.id)).size !== init.replicas.length) throw new InvalidArgumentError('journal replicas must be distinct')
    this.opts = {
      windowBytes: init.windowBytes ?? JOURNAL_MEMORY_DEFAULTS.windowBytes,
      windowRecords: init.windowRecords ?? 4096,
      retainedBytesMax: init.retainedBytesMax ?? JOURNAL_MEMORY_DEFAULTS.retainedBytesMax,
      admissionQueueMax: init.admissionQueueMax ?? 4096,
      replaceTimeoutMs: init.replaceTimeoutMs ?? 30_000,
      ackTimeoutMs: init.ackTimeoutMs ?? 15_000,
      messageBytesMax: init.messageBytesMax ?? JOURNAL_MEMORY_DEFAULTS.messageBytesMax,
      messagesInFlightMax: init.messagesInFlightMax ?? 1,
    }
    if (!Number.isSafeInteger(this.opts.messagesInFlightMax) || this.opts.messagesInFlightMax < 1) {
      throw new InvalidArgumentError(`messagesInFlightMax must be a positive integer, got ${this.opts.messagesInFlightMax}`)
    }
    this.logger = (components.logger ?? silentLogger()).child({ volumeUid: init.volumeUid, epoch: init.epoch })
  }

  /** Record bytes held for replacements (bounded by retainedBytesMax, or one record beyond when alone). */
  get retainedBytesHeld(): number {
    return this.retainedBytes
  }

  replicas(): readonly string[] {
    return this.slots.length > 0 ? this.slots.map((s) => s.member.id) : this.init.replicas.map((m) => m.id)
  }

  private connect(member: JournalMember): JournalClient {
    return this.components.connect?.(member) ?? new JournalClient({ address: member.address })
  }

  // ---------------------------------------------------------------- open (recovery)

  async open(): Promise<{ checkpoint: JournalCheckpoint | null; records: JournalRecord[] }> {
    assert(!this.opened, 'journal opened twice')
    this.opened = true
    const results = await Promise.all(this.init.replicas.map((member) => this.openMember(member)))
    const fenced = results.find((r) => r.error?.name === 'EpochFencedError')
    if (fenced?.error !== undefined) {
      this.fail(fenced.error)
      throw fenced.error
    }
    const reachable = results.filter((r) => r.opened !== undefined)
    if (reachable.length === 0) {
      const err = new JournalUnavailableError(`no journal replica of volume ${this.init.volumeUid} answered`, { cause: results[0]?.error })
      this.fail(err)
      throw err
    }
    const checkpoint = newestCheckpoint(reachable.map((r) => r.opened as OpenedReplica))
    const run = longestRun(reachable.map((r) => r.opened as OpenedReplica), checkpoint?.seq ?? 0)
    this.latestCheckpoint = checkpoint
    for (const record of run) this.retain(record)
    this.admittedSeq = run.at(-1)?.seq ?? checkpoint?.seq ?? 0
    this.nextSeq = this.admittedSeq + 1
    this.durableSeq = checkpoint?.seq ?? 0
    this.unackedBytes = this.retainedBytes
    this.slots = results.map((r) => this.newSlot(r.member, r.client))
    this.ackTimer = setInterval(() => this.checkAckProgress(), Math.max(50, this.opts.ackTimeoutMs / 4))
    this.ackTimer.unref()
    results.forEach((r, i) => {
      const slot = this.slots[i] as Slot
      if (r.opened !== undefined) this.activate(slot, r.opened, run)
      else void this.replace(slot, r.error)
    })
    // Lagging replicas catch up (and dead ones are replaced) before recovery returns.
    await this.waitUntil(() => this.slots.every((s) => s.live && s.ackedSeq >= this.admittedSeq && s.checkpointSeq >= (checkpoint?.seq ?? 0)), 'bringing replicas up to date')
    const records = run.map((r) => ({ seq: r.seq, op: decodeOp(r.op, r.payload) }))
    return { checkpoint, records }
  }

  private async openMember(member: JournalMember): Promise<{ member: JournalMember; client: JournalClient; opened?: OpenedReplica; error?: CairnError }> {
    const client = this.connect(member)
    try {
      return { member, client, opened: await client.open(this.init.volumeUid, this.init.epoch) }
    } catch (err) {
      this.logger.warn({ replica: member.id, err }, 'journal replica did not open')
      return { member, client, error: err instanceof CairnError ? err : new JournalUnavailableError(String(err), { cause: err }) }
    }
  }

  private newSlot(member: JournalMember, client: JournalClient): Slot {
    return {
      member,
      client,
      stream: undefined,
      live: false,
      generation: 0,
      sentSeq: 0,
      ackedSeq: 0,
      inFlight: [],
      checkpointSeq: 0,
      awaitingCheckpoint: false,
      lastProgressMs: Date.now(),
    }
  }

  /**
   * Makes an opened member the slot's live replica: what it holds that matches our
   * records counts as sent and durable (Open fsynced it); the rest is sent now.
   */
  private activate(slot: Slot, opened: OpenedReplica, ours: readonly StoredRecord[]): void {
    const cpSeq = this.latestCheckpoint?.seq ?? 0
    const theirCp = opened.checkpoint?.seq ?? 0
    let matched = Math.max(cpSeq, Math.min(theirCp, this.admittedSeq))
    if (theirCp <= cpSeq) {
      const theirs = new Map(opened.records.map((r) => [r.seq, r]))
      for (const record of ours) {
        const their = theirs.get(record.seq)
        if (their === undefined || !sameRecord(their, record)) break
        matched = record.seq
      }
    }
    slot.generation += 1
    slot.sentSeq = matched
    slot.ackedSeq = matched
    slot.inFlight = []
    slot.checkpointSeq = theirCp
    slot.lastProgressMs = Date.now()
    const generation = slot.generation
    slot.stream = slot.client.openAppendStream(this.init.volumeUid, this.init.epoch, {
      onAck: (seq) => this.onAck(slot, generation, seq),
      onError: (err) => this.onSlotError(slot, generation, err),
    })
    slot.live = true
    slot.awaitingCheckpoint = slot.checkpointSeq < cpSeq
    if (slot.awaitingCheckpoint) this.sendCheckpoint(slot)
    else this.flushSlot(slot)
    this.advanceDurable()
    this.notify()
  }

  // ---------------------------------------------------------------- append and durability

  append(op: JournalOp): Promise<AppendedRecord> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    if (!this.opened) return Promise.reject(new InvalidArgumentError('journal is not open'))
    if (this.admissions.length >= this.opts.admissionQueueMax) {
      return Promise.reject(new ResourceExhaustedError(`${this.admissions.length} appends waiting for the journal window; limit ${this.opts.admissionQueueMax}`))
    }
    const { op: code, payload } = encodeOp(op)
    const record: StoredRecord = { seq: this.nextSeq++, epoch: this.init.epoch, op: code, payload }
    const durable = this.durablePromise(record.seq)
    return new Promise<AppendedRecord>((resolve, reject) => {
      this.admissions.push({ record, durable, resolve, reject })
      this.admit()
    })
  }

  /**
   * Resolves when every *admitted* record is durable. Appends still waiting for room
   * are not covered: nobody was told they were appended, and waiting for them would
   * deadlock a flusher whose checkpoint is what frees their room.
   */
  sync(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    return this.durablePromise(this.admittedSeq)
  }

  private durablePromise(seq: number): Promise<void> {
    if (seq <= this.durableSeq) return Promise.resolve()
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ seq, resolve, reject }))
    // Nobody has to await `durable`; a failure is still reported to whoever does.
    p.catch(noop)
    return p
  }

  /** Admits queued appends, in seq order, while the send window and the retained budget have room. */
  private admit(): void {
    while (this.admissions.length > 0 && this.failure === undefined) {
      const head = this.admissions[0] as Admission
      const bytes = head.record.payload.length
      const unackedRecords = this.admittedSeq - this.durableSeq
      const windowFull = unackedRecords > 0 && (unackedRecords >= this.opts.windowRecords || this.unackedBytes + bytes > this.opts.windowBytes)
      const retainedFull = this.retained.length > 0 && this.retainedBytes + bytes > this.opts.retainedBytesMax
      // break, not return: records admitted by earlier turns of this loop must still be sent.
      // Returning here left them unsent with nothing in flight to trigger a send: the
      // journal, and with it every writer and the flusher's sync, stalled for good.
      if (windowFull || retainedFull) break
      this.admissions.shift()
      assert(head.record.seq === this.admittedSeq + 1, `journal seq ${head.record.seq} admitted after ${this.admittedSeq}`)
      this.retain(head.record)
      this.admittedSeq = head.record.seq
      this.unackedBytes += bytes
      head.resolve({ seq: head.record.seq, durable: head.durable })
    }
    this.scheduleFlush()
  }

  private retain(record: StoredRecord): void {
    const last = this.retained.at(-1)
    assert(last === undefined || record.seq === last.seq + 1, `retained journal seq ${record.seq} does not follow ${last?.seq}`)
    this.retained.push(record)
    this.retainedBytes += record.payload.length
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    // One message per replica carries every record admitted in this turn of the event loop.
    queueMicrotask(() => {
      this.flushScheduled = false
      for (const slot of this.slots) if (slot.live) this.flushSlot(slot)
    })
  }

  /**
   * Sends the slot admitted records it has not been sent, in messages of at most
   * messageBytesMax: full messages at once, a partial one only while fewer than
   * messagesInFlightMax are unacknowledged; the rest goes when an ack frees room
   * (onAck calls this again).
   */
  private flushSlot(slot: Slot): void {
    const stream = slot.stream
    if (stream === undefined || slot.awaitingCheckpoint) return
    const base = this.retained[0]?.seq ?? this.admittedSeq + 1
    if (slot.sentSeq === slot.ackedSeq) slot.lastProgressMs = Date.now()
    while (slot.sentSeq < this.admittedSeq) {
      const batch: StoredRecord[] = []
      let bytes = 0
      let full = false
      for (let seq = Math.max(slot.sentSeq + 1, base); seq <= this.admittedSeq; seq++) {
        const record = this.retained[seq - base] as StoredRecord
        full = batch.length > 0 && bytes + record.payload.length > this.opts.messageBytesMax
        if (full) break
        batch.push(record)
        bytes += record.payload.length
      }
      // A full message gains nothing by waiting (large writes stream, bounded by the send window);
      // a partial one waits for room so that what arrives meanwhile joins it.
      if (!full && slot.inFlight.length >= this.opts.messagesInFlightMax) return
      const lastSeq = (batch.at(-1) as StoredRecord).seq
      stream.send(batch)
      slot.inFlight.push(lastSeq)
      slot.sentSeq = lastSeq
    }
  }

  /** Forgets the in-flight messages that `slot.ackedSeq` covers. */
  private settle(slot: Slot): void {
    let done = 0
    while (done < slot.inFlight.length && (slot.inFlight[done] as number) <= slot.ackedSeq) done++
    if (done > 0) slot.inFlight.splice(0, done)
  }

  private onAck(slot: Slot, generation: number, seq: number): void {
    if (slot.generation !== generation || this.failure !== undefined) return
    if (seq > slot.ackedSeq) {
      slot.ackedSeq = seq
      slot.lastProgressMs = Date.now()
    }
    this.settle(slot)
    this.flushSlot(slot)
    this.advanceDurable()
  }

  /** Durable is the lowest acknowledgement over every current replica; it never goes back. */
  private advanceDurable(): void {
    let min = Number.MAX_SAFE_INTEGER
    for (const slot of this.slots) min = Math.min(min, slot.live ? slot.ackedSeq : 0)
    const target = Math.min(min, this.admittedSeq)
    if (target <= this.durableSeq) return
    const base = this.retained[0]?.seq ?? target + 1
    for (let seq = Math.max(this.durableSeq + 1, base); seq <= target; seq++) this.unackedBytes -= (this.retained[seq - base] as StoredRecord).payload.length
    this.durableSeq = target
    // Not sorted: a sync made after appends that still wait for room asks for a lower seq than theirs.
    const waiting: Waiter[] = []
    for (const w of this.waiters) {
      if (w.seq <= target) w.resolve()
      else waiting.push(w)
    }
    this.waiters = waiting
    this.admit()
    this.notify()
  }

  // ---------------------------------------------------------------- checkpoint

  async checkpoint(checkpoint: JournalCheckpoint): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    if (!Number.isSafeInteger(checkpoint.seq) || checkpoint.seq < 0 || checkpoint.seq > this.admittedSeq) {
      throw new InvalidArgumentError(`checkpoint seq ${checkpoint.seq} is not in [0, ${this.admittedSeq}]`)
    }
    if (checkpoint.seq < (this.latestCheckpoint?.seq ?? 0)) throw new InvalidArgumentError(`checkpoint seq ${checkpoint.seq} is older than ${this.latestCheckpoint?.seq}`)
    this.latestCheckpoint = { ...checkpoint }
    for (const slot of this.slots) if (slot.live) this.sendCheckpoint(slot)
    await this.waitUntil(() => this.slots.every((s) => s.live && s.checkpointSeq >= checkpoint.seq), 'recording a checkpoint')
    this.trimRetained(checkpoint.seq)
  }

  /** Sends the latest checkpoint to one replica; a replica that fails it is replaced (and the replacement gets it). */
  private sendCheckpoint(slot: Slot): void {
    const checkpoint = this.latestCheckpoint
    if (checkpoint === null) return
    const generation = slot.generation
    slot.client.checkpoint(this.init.volumeUid, this.init.epoch, checkpoint).then(
      (stored) => {
        if (slot.generation !== generation) return
        slot.checkpointSeq = Math.max(slot.checkpointSeq, stored.seq)
        // Records the checkpoint covers are vouched for by it, as good as acknowledged.
        slot.ackedSeq = Math.max(slot.ackedSeq, Math.min(stored.seq, this.admittedSeq))
        slot.sentSeq = Math.max(slot.sentSeq, slot.ackedSeq)
        this.settle(slot)
        // Only now may records after the checkpoint go to a member that lacked it.
        slot.awaitingCheckpoint = false
        this.flushSlot(slot)
        this.advanceDurable()
        this.notify()
      },
      (err: unknown) => this.onSlotError(slot, generation, err as CairnError),
    )
  }

  /** Drops records every replica's checkpoint covers, freeing the retained budget. */
  private trimRetained(seq: number): void {
    let drop = 0
    while (drop < this.retained.length && (this.retained[drop] as StoredRecord).seq <= seq) {
      const record = this.retained[drop] as StoredRecord
      this.retainedBytes -= record.payload.length
      if (record.seq > this.durableSeq) this.unackedBytes -= record.payload.length
      drop += 1
    }
    this.retained = this.retained.slice(drop)
    this.admit()
  }

  // ---------------------------------------------------------------- failures and replacement

  private onSlotError(slot: Slot, generation: number, err: CairnError): void {
    if (slot.generation !== generation || !slot.live || this.failure !== undefined) return
    if (err.name === 'EpochFencedError') {
      this.logger.warn({ replica: slot.member.id }, 'journal fenced by a newer epoch')
      this.fail(err instanceof EpochFencedError ? err : new EpochFencedError(err.message, { cause: err }))
      return
    }
    this.logger.warn({ replica: slot.member.id, err }, 'journal replica failed; replacing it')
    void this.replace(slot, err)
  }

  /** A replica that holds outstanding records without acknowledging any for ackTimeoutMs is treated as dead. */
  private checkAckProgress(): void {
    const now = Date.now()
    for (const slot of this.slots) {
      const stalled = slot.live && slot.sentSeq > slot.ackedSeq && now - slot.lastProgressMs > this.opts.ackTimeoutMs
      if (stalled) this.onSlotError(slot, slot.generation, new JournalUnavailableError(`replica ${slot.member.id} acknowledged nothing for ${this.opts.ackTimeoutMs} ms`))
    }
  }

  /**
   * Replaces the slot's member: asks for a new one, opens it at our epoch, brings it to
   * the latest checkpoint and every retained record, then reports the new set. Bounded by
   * replaceTimeoutMs; no member left, or no success in time, fails durability for good.
   */
  private async replace(slot: Slot, cause: unknown): Promise<void> {
    slot.live = false
    slot.generation += 1
    slot.stream?.cancel()
    slot.stream = undefined
    slot.client.close()
    this.failedIds.add(slot.member.id)
    const deadline = Date.now() + this.opts.replaceTimeoutMs
    const timer = setTimeout(() => this.fail(new JournalUnavailableError(`replica ${slot.member.id} was not replaced within ${this.opts.replaceTimeoutMs} ms`, { cause })), this.opts.replaceTimeoutMs)
    try {
      while (this.failure === undefined && Date.now() < deadline) {
        const excluded = [...new Set([...this.slots.map((s) => s.member.id), ...this.failedIds])]
        const member = await this.components.pickReplacement(excluded)
        if (member === undefined) {
          this.fail(new JournalUnavailableError(`no storage node left to replace journal replica ${slot.member.id}`, { cause }))
          return
        }
        if (await this.tryMember(slot, member)) break
      }
      if (slot.live && this.failure === undefined) {
        try {
          await this.components.onReplicasChanged(this.replicas())
        } catch (err) {
          this.logger.error({ err, replicas: this.replicas() }, 'recording the new journal replica set failed')
        }
      }
    } finally {
      clearTimeout(timer)
    }
  }

  /** Opens a candidate and makes it the slot's replica; false (and the candidate excluded) when it fails. */
  private async tryMember(slot: Slot, member: JournalMember): Promise<boolean> {
    const client = this.connect(member)
    try {
      const opened = await client.open(this.init.volumeUid, this.init.epoch)
      if (this.failure !== undefined) {
        client.close()
        return true
      }
      slot.member = member
      slot.client = client
      this.activate(slot, opened, this.retained)
      this.logger.info({ replica: member.id, replicas: this.replicas() }, 'journal replica replaced')
      return true
    } catch (err) {
      client.close()
      if ((err as Error).name === 'EpochFencedError') {
        this.fail(err as CairnError)
        return true
      }
      this.logger.warn({ replica: member.id, err }, 'journal replacement candidate failed')
      this.failedIds.add(member.id)
      return false
    }
  }

  /** Terminal: every pending and future call rejects with `err`. */
  private fail(err: CairnError): void {
    if (this.failure !== undefined) return
    this.failure = err
    clearInterval(this.ackTimer)
    for (const slot of this.slots) {
      slot.generation += 1
      slot.live = false
      slot.stream?.cancel()
      slot.stream = undefined
      slot.client.close()
    }
    for (const w of this.waiters) w.reject(err)
    this.waiters = []
    for (const a of this.admissions.splice(0)) a.reject(err)
    this.notify()
  }

  // ---------------------------------------------------------------- waiting

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }

  /** Resolves once `condition` holds; rejects with the journal's failure, or JournalUnavailableError after replaceTimeoutMs. */
  private waitUntil(condition: () => boolean, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.failure !== undefined) done(this.failure)
        else if (condition()) done(undefined)
      }
      const done = (err: CairnError | undefined): void => {
        this.listeners.delete(check)
        clearTimeout(timer)
        if (err === undefined) resolve()
        else reject(err)
      }
      const timer = setTimeout(() => {
        const err = new JournalUnavailableError(`journal replicas did not finish ${what} within ${this.opts.replaceTimeoutMs} ms`)
        this.fail(err)
        done(err)
      }, this.opts.replaceTimeoutMs)
      this.listeners.add(check)
      check()
    })
  }

  async close(): Promise<void> {
    this.fail(new ShuttingDownError(`journal of volume ${this.init.volumeUid} is closed`))
    for (const slot of this.slots) slot.client.close()
  }
}

/** The checkpoint with the highest seq among the replicas (null when none has one). */
function newestCheckpoint(replicas: readonly OpenedReplica[]): JournalCheckpoint | null {
  let best: JournalCheckpoint | null = null
  for (const r of replicas) if (r.checkpoint !== null && (best === null || r.checkpoint.seq > best.seq)) best = r.checkpoint
  return best
}

/**
 * The records after `afterSeq` to recover: from each replica, its contiguous run starting
 * at afterSeq + 1; the run whose last record has the highest epoch wins (a newer writer's
 * records supersede an older one's unacknowledged tail), then the longest.
 */
function longestRun(replicas: readonly OpenedReplica[], afterSeq: number): StoredRecord[] {
  let best: StoredRecord[] = []
  for (const replica of replicas) {
    const run: StoredRecord[] = []
    for (const record of replica.records) {
      if (record.seq <= afterSeq) continue
      if (record.seq !== afterSeq + run.length + 1) break
      run.push(record)
    }
    const runEpoch = run.at(-1)?.epoch ?? 0
    const bestEpoch = best.at(-1)?.epoch ?? 0
    if (runEpoch > bestEpoch || (runEpoch === bestEpoch && run.length > best.length)) best = run
  }
  return best
}
