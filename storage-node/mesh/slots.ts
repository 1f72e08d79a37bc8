/** A counting semaphore with a bounded wait queue: concurrent calls to one peer. */
import { ResourceExhaustedError } from '../../core/errors.js'
import { MeshUnavailableError } from './errors.js'

interface Waiter {
  grant: () => void
  fail: (err: Error) => void
}

export class Slots {
  private used = 0
  private readonly waiters: Waiter[] = []

  constructor(
    private readonly limit: number,
    private readonly waitersMax: number,
  ) {}

  /**
   * Resolves with a release function once a slot is free.
   * @throws ResourceExhaustedError when `waitersMax` calls already wait
   * @throws MeshUnavailableError when `signal` aborts first
   */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.used < this.limit) {
      this.used++
      return this.releaser()
    }
    if (this.waiters.length >= this.waitersMax) throw new ResourceExhaustedError(`${this.waitersMax} calls already wait for this peer`)
    if (signal.aborted) throw new MeshUnavailableError('call aborted while waiting for a slot', { cause: signal.reason })
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          signal.removeEventListener('abort', onAbort)
          resolve()
        },
        fail: reject,
      }
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter)
        if (at >= 0) this.waiters.splice(at, 1)
        reject(new MeshUnavailableError('call aborted while waiting for a slot', { cause: signal.reason }))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
    return this.releaser()
  }

  /** Slots in use; for tests. */
  inUse(): number {
    return this.used
  }

  private releaser(): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiters.shift()
      // The slot passes straight to the next waiter, so `used` stays the same.
      if (next !== undefined) next.grant()
      else this.used--
    }
  }
}
