/**
 * Remembers since when each member of each block store has been seen not
 * ready, so a member is marked Down only after `memberDownTimeoutSeconds`.
 *
 * The memory lives in the leader process only. A new leader (or a restarted
 * operator) starts every not-ready member's clock afresh: that can delay a
 * Down by at most one timeout, and never causes one early, which is the safe
 * side (an early Down starts rebuilding a member's shards that may come back).
 */

/** Per block store, per member id: the clock reading at which the member was first seen not ready. */
export class NotReadyTracker {
  private readonly since = new Map<string, Map<string, number>>()

  /**
   * Records the readiness of `blockStore`'s members as seen at `nowMs` and
   * returns, per member id that is not ready, since when it has not been.
   * Members no longer listed are forgotten.
   */
  observe(blockStore: string, readyById: ReadonlyMap<string, boolean>, nowMs: number): ReadonlyMap<string, number> {
    const old = this.since.get(blockStore) ?? new Map<string, number>()
    const next = new Map<string, number>()
    for (const [id, ready] of readyById) {
      if (!ready) next.set(id, old.get(id) ?? nowMs)
    }
    if (next.size === 0) this.since.delete(blockStore)
    else this.since.set(blockStore, next)
    return next
  }

  /** Drops everything about a block store (it was deleted). */
  forget(blockStore: string): void {
    this.since.delete(blockStore)
  }
}
