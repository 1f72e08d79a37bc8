/**
 * A bounded pool of worker threads that hashes, encodes, reconstructs and
 * verifies chunks off the event loop, so a flush of thousands of chunks never
 * stalls NBD replies. Buffers move between threads by transfer, not copy.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import type { Logger } from '../logger.js'
import { silentLogger } from '../logger.js'
import type { Startable } from '../startable.js'
import { InvalidArgumentError, ShuttingDownError, assert } from '../errors.js'
import type { KernelName } from '../erasure/kernel.js'
import { createCodecJobRunner, jobInputBytes, transferables, type CodecJob, type CodecJobResult, type CodecJobRunner, type DecodeJob, type EncodeJob, type EncodedChunk } from './codec-jobs.js'
import { deserializeError, WorkerCrashedError } from './errors.js'
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js'

export interface CodecPoolInit {
  /** Worker threads; one core stays free for the event loop. @default max(1, availableParallelism() - 1) */
  workers?: number
  /** Jobs queued or running at once; further callers wait for a slot (backpressure). @default 2 × workers */
  inFlightMax?: number
  /** GF(2^8) kernel used by every thread. @default 'wasm-simd' */
  kernel?: KernelName
  /** Jobs with at most this many input bytes run on the calling thread: a thread hop costs more than they do. @default 0 */
  inlineMaxBytes?: number
  /** Worker entry; tests substitute one that injects faults. @default ./codec-worker.js next to this module */
  workerUrl?: URL
}

export interface CodecPoolComponents {
  /** @default silentLogger() */
  logger?: Logger
}

export interface SubmitOptions {
  /**
   * Move the input buffers to the worker instead of copying them; they are
   * detached on this thread afterwards. Only buffers wholly covered by the
   * inputs move; others are copied. @default false
   */
  transfer?: boolean
}

/** Counters for metrics and tests. */
export interface CodecPoolStats {
  workers: number
  /** Jobs holding a slot: queued or running. Never above inFlightMax. */
  inFlight: number
  /** Jobs waiting for a worker. */
  queued: number
  /** Callers waiting for a slot. */
  waiting: number
  /** Workers that died and were replaced since start. */
  crashes: number
}

interface Task {
  id: number
  job: CodecJob
  transfer: ArrayBuffer[]
  resolve(result: CodecJobResult): void
  reject(err: unknown): void
}

interface Slot {
  worker: Worker
  ready: boolean
  task?: Task
  crashCause?: unknown
}

type State = 'new' | 'starting' | 'running' | 'stopped'

export class CodecPool implements Startable {
  readonly #workers: number
  readonly #inFlightMax: number
  readonly #kernel: KernelName
  readonly #inlineMaxBytes: number
  readonly #workerUrl: URL
  readonly #logger: Logger
  #state: State = 'new'
  #runner: CodecJobRunner | undefined
  readonly #slots = new Set<Slot>()
  readonly #queue: Task[] = []
  readonly #waiters: { resolve(): void; reject(err: unknown): void }[] = []
  #inFlight = 0
  #crashes = 0
  #nextId = 1

  constructor(init: CodecPoolInit = {}, components: CodecPoolComponents = {}) {
    this.#workers = init.workers ?? Math.max(1, availableParallelism() - 1)
    this.#inFlightMax = init.inFlightMax ?? 2 * this.#workers
    this.#kernel = init.kernel ?? 'wasm-simd'
    this.#inlineMaxBytes = init.inlineMaxBytes ?? 0
    this.#workerUrl = init.workerUrl ?? new URL('./codec-worker.js', import.meta.url)
    this.#logger = components.logger ?? silentLogger()
    if (!Number.isInteger(this.#workers) || this.#workers < 1) throw new InvalidArgumentError(`workers must be an integer >= 1, got ${this.#workers}`)
    if (!Number.isInteger(this.#inFlightMax) || this.#inFlightMax < 1) throw new InvalidArgumentError(`inFlightMax must be an integer >= 1, got ${this.#inFlightMax}`)
    if (!(this.#inlineMaxBytes >= 0)) throw new InvalidArgumentError(`inlineMaxBytes must be >= 0, got ${this.#inlineMaxBytes}`)
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return
    this.#state = 'starting'
    try {
      this.#runner = await createCodecJobRunner(this.#kernel)
      await Promise.all(Array.from({ length: this.#workers }, () => this.#spawn()))
    } catch (err) {
      await this.stop()
      throw err
    }
    if (this.#state === 'starting') this.#state = 'running'
  }

  /** Rejects waiting and queued jobs with ShuttingDownError, and terminates the workers (their running jobs too). */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return
    this.#state = 'stopped'
    const stopping = new ShuttingDownError('codec pool stopped')
    for (const w of this.#waiters.splice(0)) w.reject(stopping)
    for (const t of this.#queue.splice(0)) t.reject(stopping)
    const slots = [...this.#slots]
    await Promise.all(slots.map((s) => s.worker.terminate()))
    for (const s of slots) s.task?.reject(stopping)
    this.#slots.clear()
  }

  /** Hash and encode a batch of chunks. */
  async encode(job: Omit<EncodeJob, 'kind'>, options: SubmitOptions = {}): Promise<EncodedChunk[]> {
    const full: EncodeJob = { ...job, kind: 'encode' }
    return (await this.#submit(full, options.transfer === true ? transferables(full.chunks) : [])) as EncodedChunk[]
  }

  /** Reconstruct a batch of chunks from their shards and verify each against its CID. */
  async decode(job: Omit<DecodeJob, 'kind'>, options: SubmitOptions = {}): Promise<Uint8Array[]> {
    const full: DecodeJob = { ...job, kind: 'decode' }
    const transfer = options.transfer === true ? transferables(full.chunks.flatMap((c) => c.shards)) : []
    return (await this.#submit(full, transfer)) as Uint8Array[]
  }

  stats(): CodecPoolStats {
    return { workers: this.#slots.size, inFlight: this.#inFlight, queued: this.#queue.length, waiting: this.#waiters.length, crashes: this.#crashes }
  }

  async #submit(job: CodecJob, transfer: ArrayBuffer[]): Promise<CodecJobResult> {
    if (this.#state !== 'running') throw new ShuttingDownError(`codec pool is ${this.#state === 'stopped' ? 'stopped' : 'not started'}`)
    if (jobInputBytes(job) <= this.#inlineMaxBytes) return (this.#runner as CodecJobRunner).run(job)
    await this.#acquire()
    try {
      // stop() may have run while this caller waited for its slot.
      if (this.#state !== 'running') throw new ShuttingDownError('codec pool stopped')
      return await new Promise<CodecJobResult>((resolve, reject) => {
        this.#queue.push({ id: this.#nextId++, job, transfer, resolve, reject })
        this.#dispatch()
      })
    } finally {
      this.#release()
    }
  }

  /** Takes an in-flight slot, waiting (backpressure) while all are taken. */
  async #acquire(): Promise<void> {
    if (this.#inFlight < this.#inFlightMax) {
      this.#inFlight++
      return
    }
    // The slot is handed over by #release, so inFlight stays at the bound.
    await new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }))
  }

  #release(): void {
    const next = this.#waiters.shift()
    if (next !== undefined) next.resolve()
    else this.#inFlight--
    assert(this.#inFlight >= 0 && this.#inFlight <= this.#inFlightMax, 'codec pool in-flight count out of bounds')
  }

  /** Hands queued jobs to idle workers, one job per worker at a time. */
  #dispatch(): void {
    for (const slot of this.#slots) {
      if (this.#queue.length === 0) return
      if (!slot.ready || slot.task !== undefined) continue
      const task = this.#queue.shift() as Task
      try {
        slot.worker.postMessage({ id: task.id, job: task.job } satisfies ToWorker, task.transfer)
        slot.task = task
      } catch (err) {
        // Not cloneable (a caller passed something other than bytes): their error, not the worker's.
        task.reject(new InvalidArgumentError('codec job cannot be sent to a worker', { cause: err }))
      }
    }
  }

  #spawn(): Promise<void> {
    const worker = new Worker(this.#workerUrl, { workerData: { kernel: this.#kernel } satisfies WorkerInit })
    const slot: Slot = { worker, ready: false }
    this.#slots.add(slot)
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          slot.ready = true
          resolve()
          this.#dispatch()
        } else if (message.type === 'init-error') {
          reject(deserializeError(message.error))
          void worker.terminate()
        } else {
          this.#finish(slot, message)
        }
      })
      worker.on('error', (err) => {
        slot.crashCause = err
      })
      worker.on('exit', (code) => {
        if (!slot.ready) reject(new WorkerCrashedError(`codec worker exited with code ${code} before it was ready`, { cause: slot.crashCause }))
        this.#onExit(slot, code)
      })
    })
  }

  #finish(slot: Slot, message: Extract<FromWorker, { id: number }>): void {
    const task = slot.task
    assert(task !== undefined && task.id === message.id, `codec worker answered job ${message.id} it was not running`)
    slot.task = undefined
    if (message.type === 'result') task.resolve(message.result)
    else task.reject(deserializeError(message.error))
    this.#dispatch()
  }

  /** A worker is gone: fail its job, replace it if it had been healthy, and never strand queued jobs. */
  #onExit(slot: Slot, code: number): void {
    this.#slots.delete(slot)
    if (this.#state === 'stopped') return
    const task = slot.task
    slot.task = undefined
    this.#crashes++
    this.#logger.error({ code, err: slot.crashCause }, 'codec worker died; replacing it')
    task?.reject(new WorkerCrashedError(`codec worker exited with code ${code} while running a job`, { cause: slot.crashCause }))
    if (slot.ready) {
      this.#spawn().catch((err: unknown) => {
        this.#logger.error({ err }, 'replacement codec worker failed to start')
      })
    }
    if (this.#slots.size === 0) {
      for (const t of this.#queue.splice(0)) t.reject(new WorkerCrashedError('no codec worker left to run this job'))
    }
  }
}
