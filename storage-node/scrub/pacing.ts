/**
 * Pacing for the background durability work (scrub, repair, rebalance): a
 * token bucket over an injectable clock, so tests measure the pace against a
 * fake clock instead of asserting wall-clock timings.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { CairnError, InvalidArgumentError } from '../../core/errors.js'

/** A pass stopped because its signal was aborted (stop(), or the caller gave up). */
export class PassAbortedError extends CairnError {
  override readonly name = 'PassAbortedError'
  readonly kind = 'aborted'
}

/** Time as the pacing sees it. */
export interface PaceClock {
  nowMs(): number
  /** Resolves after `ms`; rejects with PassAbortedError when `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

/** The machine's clock. */
export const systemClock: PaceClock = {
  nowMs: () => Date.now(),
  async sleep(ms, signal) {
    throwIfAborted(signal)
    try {
      await delay(ms, undefined, signal === undefined ? {} : { signal })
    } catch (err) {
      if (signal?.aborted === true) throw new PassAbortedError('pass aborted', { cause: err })
      throw err
    }
  },
}

/** Throws PassAbortedError when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new PassAbortedError('pass aborted', { cause: signal.reason })
}

export interface TokenBucketInit {
  /** Sustained rate; Infinity means unpaced. Must be > 0. */
  bytesPerSecond: number
  /**
   * Bytes that may go at once after an idle period.
   * @default a tenth of a second's worth at the current rate (at least 1)
   */
  burstBytes?: number
}

/**
 * A token bucket that lets a request larger than the bucket through by going
 * into debt and sleeping it off, so any shard size works with any rate.
 *
 * Invariant (the pace tests check it): every `take` returns at a time t such
 * that the bytes taken so far, this one included, are at most
 * `burstBytes + bytesPerSecond × (t − first take)`, give or take a rate change.
 */
export class TokenBucket {
  #rate: number
  #burstInit: number | undefined
  #burst: number
  #tokens: number
  #lastMs: number | undefined
  #takenBytes = 0

  constructor(
    init: TokenBucketInit,
    private readonly clock: PaceClock = systemClock,
  ) {
    this.#rate = checkRate(init.bytesPerSecond)
    if (init.burstBytes !== undefined && !(init.burstBytes >= 1)) throw new InvalidArgumentError(`burstBytes must be >= 1, got ${init.burstBytes}`)
    this.#burstInit = init.burstBytes
    this.#burst = this.#burstFor(this.#rate)
    this.#tokens = this.#burst
  }

  get bytesPerSecond(): number {
    return this.#rate
  }

  get takenBytes(): number {
    return this.#takenBytes
  }

  /** Changes the rate from now on (repair divides the cluster cap by the active members, which change). */
  setRate(bytesPerSecond: number): void {
    const rate = checkRate(bytesPerSecond)
    if (rate === this.#rate) return
    this.#refill()
    this.#rate = rate
    this.#burst = this.#burstFor(rate)
    this.#tokens = Math.min(this.#tokens, this.#burst)
  }

  /** Waits until `bytes` may go. @throws PassAbortedError when `signal` aborts first */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal)
    if (!(bytes >= 0)) throw new InvalidArgumentError(`cannot take ${bytes} bytes`)
    this.#takenBytes += bytes
    if (this.#rate === Infinity || bytes === 0) return
    this.#refill()
    this.#tokens -= bytes
    if (this.#tokens < 0) await this.clock.sleep((-this.#tokens * 1000) / this.#rate, signal)
  }

  #refill(): void {
    const now = this.clock.nowMs()
    if (this.#lastMs !== undefined && now > this.#lastMs) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#lastMs) * this.#rate) / 1000)
    }
    this.#lastMs = now
  }

  #burstFor(rate: number): number {
    return this.#burstInit ?? (rate === Infinity ? Infinity : Math.max(1, rate / 10))
  }
}

function checkRate(bytesPerSecond: number): number {
  if (typeof bytesPerSecond !== 'number' || !(bytesPerSecond > 0)) {
    throw new InvalidArgumentError(`bytesPerSecond must be a number > 0 (Infinity for unpaced), got ${String(bytesPerSecond)}`)
  }
  return bytesPerSecond
}
