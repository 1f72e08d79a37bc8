/**
 * Runs the segment store's write-behind index flushes on a worker thread with its own
 * SQLite connection, so the event loop neither spends the ~12 µs of CPU a row costs nor
 * waits for it. One flush is in flight at a time; the store can wait for it
 * synchronously (Atomics.wait plus receiveMessageOnPort) where it needs the index whole.
 * Why: docs/adr/0003-shard-store.md, "2026-11-23".
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads'
import { CairnError } from '../core/errors.js'
import type { PackedRecords, Replaced } from './segment-index.js'

/** The index worker failed to start, died, or did not answer in time. */
export class IndexWorkerError extends CairnError {
  override readonly name = 'IndexWorkerError'
  readonly kind = 'unavailable'
}

export interface IndexWorkerData {
  indexPath: string
  /** done[0]: the sequence number of the last request the worker answered. */
  done: Int32Array
}

export interface FlushRequest {
  seq: number
  segmentId: number
  sizeBytes: number
  records: PackedRecords
}

export type FlushReply = { seq: number; ok: true; replaced: Replaced } | { seq: number; ok: false; errorName: string; errorMessage: string }

export interface IndexFlusherInit {
  indexPath: string
  /** Called once per request with its outcome, before any waiter resumes. */
  onReply: (reply: FlushReply) => void
  /** Longest a synchronous wait for the worker lasts before IndexWorkerError. @default 30000 */
  waitTimeoutMs?: number
  /** The worker script; tests substitute one. @default ./index-flusher-worker.js */
  workerUrl?: URL
}

export class IndexFlusher {
  private readonly worker: Worker
  private readonly port: MessagePort
  private readonly done = new Int32Array(new SharedArrayBuffer(4))
  private seq = 0
  /** Sequence number of the request the worker is working on; undefined when idle. */
  private inFlight: number | undefined = 0
  private idleWaiters: Array<() => void> = []
  private exited = false

  private constructor(private readonly init: IndexFlusherInit) {
    const channel = new MessageChannel()
    this.port = channel.port1
    const workerData = { indexPath: init.indexPath, done: this.done, port: channel.port2 }
    this.worker = new Worker(init.workerUrl ?? new URL('./index-flusher-worker.js', import.meta.url), { workerData, transferList: [channel.port2] })
    this.port.on('message', (reply: FlushReply) => this.take(reply))
    this.worker.on('error', () => undefined)
    this.worker.on('exit', () => {
      this.exited = true
      if (this.inFlight !== undefined) this.take({ seq: this.inFlight, ok: false, errorName: 'IndexWorkerError', errorMessage: 'the index worker exited' })
    })
    // An idle worker must not keep the process alive (a store that is never stopped);
    // the port is referenced only while an answer is awaited (the start, then each flush).
    this.worker.unref()
  }

  /** Starts the worker and waits until its connection is open; IndexWorkerError if it cannot open one. */
  static async start(init: IndexFlusherInit): Promise<IndexFlusher> {
    let opened: FlushReply | undefined
    const flusher = new IndexFlusher({ ...init, onReply: (reply) => (opened = reply) })
    await flusher.idle()
    if (opened?.ok !== true) {
      await flusher.stop()
      throw new IndexWorkerError(`index worker could not open ${init.indexPath}: ${opened?.ok === false ? opened.errorMessage : 'it exited'}`)
    }
    flusher.init.onReply = init.onReply
    return flusher
  }

  /** Whether a flush is in flight. */
  get busy(): boolean {
    return this.inFlight !== undefined
  }

  /** Whether requests can still be sent. */
  get usable(): boolean {
    return !this.exited
  }

  /** Sends one flush; only when not busy. */
  send(segmentId: number, sizeBytes: number, records: PackedRecords): void {
    if (this.busy || this.exited) throw new IndexWorkerError('index worker is busy or gone')
    this.seq += 1
    this.inFlight = this.seq
    this.port.ref()
    const request: FlushRequest = { seq: this.seq, segmentId, sizeBytes, records }
    this.port.postMessage(request, [records.cids.buffer as ArrayBuffer, records.cidEnds.buffer as ArrayBuffer, records.numbers.buffer as ArrayBuffer])
  }

  /** Resolves once no flush is in flight. */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  /**
   * Blocks the calling thread until the flush in flight (if any) is answered and its
   * reply handled: for callers that need the whole index now and cannot await.
   */
  waitSync(): void {
    const deadline = Date.now() + (this.init.waitTimeoutMs ?? 30_000)
    while (this.inFlight !== undefined) {
      const message = receiveMessageOnPort(this.port)
      if (message !== undefined) {
        this.take(message.message as FlushReply)
        continue
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new IndexWorkerError(`index worker did not answer flush ${this.inFlight} in time`)
      const seen = Atomics.load(this.done, 0)
      // Answered: its reply was queued before the signal, so the next receive finds it.
      if (seen >= this.inFlight) continue
      // Short slices: a worker that died never signals, and its exit event cannot run while we block.
      Atomics.wait(this.done, 0, seen, Math.min(left, 100))
    }
  }

  /** Closes the worker's connection and ends the thread; call when idle. */
  async stop(): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()))
    // Referenced until it exits, so awaiting its exit keeps the process alive.
    this.worker.ref()
    this.port.postMessage('close')
    await exited
    this.port.close()
  }

  private take(reply: FlushReply): void {
    if (reply.seq !== this.inFlight) return
    this.inFlight = undefined
    this.port.unref()
    this.init.onReply(reply)
    for (const resolve of this.idleWaiters.splice(0)) resolve()
  }
}
