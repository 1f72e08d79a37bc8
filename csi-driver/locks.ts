/**
 * Per-volume (and per-snapshot) locks. The CSI specification lets a plugin refuse a
 * call while another one on the same volume is in flight, with ABORTED; the CO
 * retries with backoff. Refusing instead of queueing keeps the number of waiting
 * calls bounded by the number of distinct keys, and a stuck call never stacks up
 * retries behind it.
 *
 * The locks live in this process: a controller runs as one leader-elected replica
 * (the sidecars elect), and the control plane's compare-and-swap still guards every
 * write, so a second replica could at worst get a ConflictError, never a lost update.
 */
import { OperationPendingError } from './errors.js'

export class KeyedLocks {
  private readonly held = new Set<string>()

  /**
   * Takes the lock on `key` or throws OperationPendingError at once when it is held.
   * @returns the function that releases it (calling it twice is harmless).
   */
  acquire(key: string): () => void {
    if (this.held.has(key)) throw new OperationPendingError(`an operation on ${key} is already in progress; retry later`)
    this.held.add(key)
    let released = false
    return () => {
      if (released) return
      released = true
      this.held.delete(key)
    }
  }

  /** Runs `fn` holding every key in `keys` (deduplicated), releasing them all afterwards. */
  async withLocks<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const releases: Array<() => void> = []
    try {
      for (const key of new Set(keys)) releases.push(this.acquire(key))
      return await fn()
    } finally {
      for (const release of releases) release()
    }
  }

  /** Whether `key` is held (for tests and metrics). */
  isHeld(key: string): boolean {
    return this.held.has(key)
  }

  /** Number of keys held now. */
  get size(): number {
    return this.held.size
  }
}

/** The lock key of a volume id. */
export function volumeKey(volumeId: string): string {
  return `volume/${volumeId}`
}

/** The lock key of a snapshot id. */
export function snapshotKey(snapshotId: string): string {
  return `snapshot/${snapshotId}`
}
