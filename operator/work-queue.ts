/**
 * A keyed work queue in the manner of client-go's: a key waits in the queue at
 * most once (dedup), at most one reconcile per key runs at a time (a key added
 * while it runs is run again afterwards, so no event is lost), failures are
 * retried after a bounded, jittered exponential backoff, and the number of
 * distinct pending keys is bounded.
 */
import { InvalidArgumentError } from '../core/errors.js'
import type { Startable } from '../core/startable.js'

/** Options of a {@link WorkQueue}. */
export interface WorkQueueInit {
  /** Reconciles running at once (different keys). @default 2 */
  concurrency?: number
  /** Most distinct keys waiting; further adds are refused (the controller's periodic resync brings them back). @default 10000 */
  maxKeys?: number
  /** Backoff after the first failure of a key. @default 100 */
  backoffBaseMs?: number
  /** Cap on the backoff. @default 30000 */
  backoffMaxMs?: number
  /** Uniform [0, 1) source for jitter; tests pass a seeded one. @default Math.random */
  random?: () => number
}

/** What the queue reports for metrics. */
export interface WorkQueueHooks {
  onDepth?: (depth: number) => void
  /** One reconcile finished; `error` set when it threw. */
  onDone?: (key: string, durationSeconds: number, error: unknown) => void
}

/**
 * Reconciles one key. A returned number asks for another run after that many
 * milliseconds (periodic work, waiting on another component); a throw retries
 * with backoff.
 */
export type Reconcile = (key: string) => Promise<number | void>

export class WorkQueue implements Startable {
  private readonly queue: string[] = []
  private readonly dirty = new Set<string>()
  private readonly processing = new Set<string>()
  private readonly failures = new Map<string, number>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly idleWaiters = new Set<() => void>()
  private running = false
  private active = 0
  private readonly concurrency: number
  private readonly maxKeys: number
  private readonly backoffBaseMs: number
  private readonly backoffMaxMs: number
  private readonly random: () => number

  constructor(
    init: WorkQueueInit,
    private readonly reconcile: Reconcile,
    private readonly hooks: WorkQueueHooks = {},
  ) {
    this.concurrency = init.concurrency ?? 2
    this.maxKeys = init.maxKeys ?? 10_000
    this.backoffBaseMs = init.backoffBaseMs ?? 100
    this.backoffMaxMs = init.backoffMaxMs ?? 30_000
    this.random = init.random ?? Math.random
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new InvalidArgumentError('concurrency must be a positive integer')
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new InvalidArgumentError('maxKeys must be a positive integer')
    if (!(this.backoffBaseMs > 0) || !(this.backoffMaxMs >= this.backoffBaseMs)) throw new InvalidArgumentError('need 0 < backoffBaseMs <= backoffMaxMs')
  }

  async start(): Promise<void> {
    this.running = true
    this.pump()
  }

  /** Stops taking work, cancels delayed adds and waits for running reconciles to finish. */
  async stop(): Promise<void> {
    this.running = false
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.timers.clear()
    this.queue.length = 0
    this.dirty.clear()
    await this.idle()
  }

  /** Keys waiting (not counting running ones). */
  get depth(): number {
    return this.queue.length
  }

  /**
   * Queues `key` unless it is already waiting. Returns false when the queue is
   * full or stopped: the key is dropped, and the caller's resync brings it back.
   */
  add(key: string): boolean {
    if (!this.running) return false
    if (this.dirty.has(key)) return true
    if (this.dirty.size >= this.maxKeys) return false
    this.dirty.add(key)
    if (!this.processing.has(key)) this.queue.push(key)
    this.hooks.onDepth?.(this.queue.length)
    this.pump()
    return true
  }

  /** Queues `key` after `delayMs`; an earlier pending delayed add of the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (!this.running || this.timers.has(key)) return
    const timer = setTimeout(() => {
      this.timers.delete(key)
      this.add(key)
    }, Math.max(0, delayMs))
    timer.unref()
    this.timers.set(key, timer)
  }

  /** The delay before retry `failures` (1-based) of a key: base·2^(n−1) capped, then jittered to [½, 1] of that. */
  backoffMs(failures: number): number {
    const raw = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(failures - 1, 52))
    return Math.round(raw * (0.5 + this.random() / 2))
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.add(resolve))
  }

  private pump(): void {
    while (this.running && this.active < this.concurrency && this.queue.length > 0) {
      const key = this.queue.shift() as string
      this.dirty.delete(key)
      this.processing.add(key)
      this.active++
      this.hooks.onDepth?.(this.queue.length)
      void this.run(key)
    }
  }

  private async run(key: string): Promise<void> {
    const started = performance.now()
    let error: unknown
    let requeueAfterMs: number | void = undefined
    try {
      requeueAfterMs = await this.reconcile(key)
    } catch (err) {
      error = err ?? new Error('reconcile threw a nullish value')
    }
    this.hooks.onDone?.(key, (performance.now() - started) / 1000, error)
    this.processing.delete(key)
    this.active--
    if (error !== undefined) {
      const failures = (this.failures.get(key) ?? 0) + 1
      this.failures.set(key, failures)
      this.addAfter(key, this.backoffMs(failures))
    } else {
      this.failures.delete(key)
      if (typeof requeueAfterMs === 'number') this.addAfter(key, requeueAfterMs)
    }
    // Added while it ran: run it again now, with what changed meanwhile.
    if (this.dirty.has(key) && this.running) this.queue.push(key)
    this.pump()
    if (this.active === 0 && this.queue.length === 0) {
      for (const resolve of [...this.idleWaiters]) resolve()
      this.idleWaiters.clear()
    }
  }
}
