/**
 * A first-come, first-served budget of bytes: puts take their bytes before they
 * encode and give them back once every node answered, so the memory held by
 * puts in progress stays bounded and a burst of writers waits (backpressure).
 */
import { InvalidArgumentError, ShuttingDownError, assert } from '../../core/errors.js'

export class ByteBudget {
  readonly #maxBytes: number
  #usedBytes = 0
  readonly #waiters: { bytes: number; resolve(): void; reject(err: unknown): void }[] = []

  constructor(maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new InvalidArgumentError(`byte budget must be a positive integer, got ${maxBytes}`)
    this.#maxBytes = maxBytes
  }

  /**
   * Waits until `bytes` fit, in arrival order, and takes them. A request larger
   * than the whole budget is clamped to it, so it runs alone instead of never.
   * @returns the bytes taken, to hand back to release()
   */
  async acquire(bytes: number): Promise<number> {
    const taken = Math.min(Math.max(0, bytes), this.#maxBytes)
    // FIFO: a large request is not starved by a stream of small ones behind it.
    if (this.#waiters.length === 0 && this.#usedBytes + taken <= this.#maxBytes) {
      this.#usedBytes += taken
      return taken
    }
    await new Promise<void>((resolve, reject) => this.#waiters.push({ bytes: taken, resolve, reject }))
    return taken
  }

  release(bytes: number): void {
    this.#usedBytes -= bytes
    assert(this.#usedBytes >= 0, 'byte budget released more than it gave')
    while (this.#waiters.length > 0) {
      const next = this.#waiters[0] as { bytes: number; resolve(): void }
      if (this.#usedBytes + next.bytes > this.#maxBytes) break
      this.#waiters.shift()
      this.#usedBytes += next.bytes
      next.resolve()
    }
  }

  /** Fails every waiter: the owner is stopping. */
  rejectWaiters(): void {
    for (const w of this.#waiters.splice(0)) w.reject(new ShuttingDownError('chunk store stopped'))
  }

  get usedBytes(): number {
    return this.#usedBytes
  }
}
