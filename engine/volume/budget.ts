/**
 * The dirty-byte budget: admission control in front of the journal.
 *
 * A write reserves what it may add to the dirty map before it is journaled, so the
 * map can never outgrow the bound, and waits (first come, first served) while the
 * budget is spent. A request larger than the whole bound is admitted when nothing
 * else is held, so every request makes progress.
 */
import { ShuttingDownError } from '../../core/errors.js'

interface Waiter {
  bytes: number
  resolve: () => void
  reject: (err: unknown) => void
}

export class DirtyBudget {
  private reservedBytes = 0
  private readonly waiters: Waiter[] = []

  constructor(
    private readonly limitBytes: number,
    /** Bytes currently held by the dirty map itself. */
    private readonly heldBytes: () => number,
  ) {}

  get reserved(): number {
    return this.reservedBytes
  }

  get waiting(): number {
    return this.waiters.length
  }

  /** Resolves once `bytes` are reserved; `onWait` runs when the caller has to wait. */
  async reserve(bytes: number, onWait: () => void): Promise<void> {
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.reservedBytes += bytes
      return
    }
    onWait()
    await new Promise<void>((resolve, reject) => this.waiters.push({ bytes, resolve, reject }))
  }

  /** Returns a reservation (after its record was applied, or when it failed). */
  release(bytes: number): void {
    this.reservedBytes -= bytes
    this.wake()
  }

  /** Admits waiters in order while they fit; call whenever the dirty map shrinks. */
  wake(): void {
    while (this.waiters.length > 0) {
      const first = this.waiters[0] as Waiter
      if (!this.fits(first.bytes)) return
      this.waiters.shift()
      this.reservedBytes += first.bytes
      first.resolve()
    }
  }

  /** Fails every waiter (the engine stopped or was fenced). */
  rejectAll(err: unknown = new ShuttingDownError('volume engine stopped')): void {
    for (const w of this.waiters.splice(0)) w.reject(err)
  }

  private fits(bytes: number): boolean {
    const used = this.heldBytes() + this.reservedBytes
    return used + bytes <= this.limitBytes || used === 0
  }
}
