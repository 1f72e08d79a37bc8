/**
 * The pass scheduling scrub and repair share: passes run one at a time (an
 * on-demand pass waits for the one in progress), a background loop runs one every
 * interval until stopped, and stop aborts the pass in progress and waits for it.
 */
import type { Logger } from '../../core/logger.js'
import { PassAbortedError, type PaceClock } from './pacing.js'

export interface PassLoopInit {
  /** Time between background passes; 0: no background loop (passes only on demand). */
  intervalMs: number
  /** What a failed pass is logged as, e.g. `scrub`. */
  what: string
}

export class PassLoop<R> {
  #running: Promise<unknown> = Promise.resolve()
  #loop: Promise<void> | undefined
  #stopper: AbortController | undefined

  constructor(
    private readonly init: PassLoopInit,
    private readonly components: { clock: PaceClock; logger: Logger },
    private readonly pass: (signal: AbortSignal | undefined) => Promise<R>,
  ) {}

  get started(): boolean {
    return this.#stopper !== undefined
  }

  /** Starts the background loop (when an interval is set). */
  start(): void {
    if (this.#stopper !== undefined) return
    this.#stopper = new AbortController()
    if (this.init.intervalMs > 0) this.#loop = this.#background(this.#stopper.signal)
  }

  /** Aborts the pass in progress and waits for it. */
  async stop(): Promise<void> {
    this.#stopper?.abort()
    await this.#loop
    await this.#running.catch(() => undefined)
  }

  /** Runs one pass after any pass in progress; it aborts on `signal` or on stop. */
  run(signal?: AbortSignal): Promise<R> {
    const run = this.#running.catch(() => undefined).then(() => this.pass(this.#withStop(signal)))
    this.#running = run
    return run
  }

  #withStop(signal: AbortSignal | undefined): AbortSignal | undefined {
    const signals = [signal, this.#stopper?.signal].filter((s): s is AbortSignal => s !== undefined)
    return signals.length > 0 ? AbortSignal.any(signals) : undefined
  }

  async #background(signal: AbortSignal): Promise<void> {
    const { clock, logger } = this.components
    while (!signal.aborted) {
      try {
        await this.run(signal)
        await clock.sleep(this.init.intervalMs, signal)
      } catch (err) {
        if (err instanceof PassAbortedError) return
        logger.error({ err }, `${this.init.what} pass failed; retrying after the interval`)
        await clock.sleep(this.init.intervalMs, signal).catch(() => undefined)
      }
    }
  }
}
