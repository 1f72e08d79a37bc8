/**
 * A set of byte ranges inside one chunk, kept sorted, disjoint and coalesced.
 * The dirty map uses it to remember which bytes of a partially written chunk are
 * newer than the chunk below them, so a flush reads the old chunk only when it
 * must and overlays exactly what changed.
 */
import { assert } from '../../core/errors.js'

export class RangeSet {
  /** Flat [start0, end0, start1, end1, …]; ends are exclusive. */
  private bounds: number[] = []

  /** Adds [start, end). */
  add(start: number, end: number): void {
    assert(Number.isInteger(start) && Number.isInteger(end) && start < end, `bad range [${start}, ${end})`)
    const next: number[] = []
    let s = start
    let e = end
    let placed = false
    for (let i = 0; i < this.bounds.length; i += 2) {
      const a = this.bounds[i] as number
      const b = this.bounds[i + 1] as number
      if (b < s) {
        next.push(a, b)
      } else if (a > e) {
        if (!placed) next.push(s, e)
        placed = true
        next.push(a, b)
      } else {
        // Overlapping or touching: merge into the range being placed.
        s = Math.min(s, a)
        e = Math.max(e, b)
      }
    }
    if (!placed) next.push(s, e)
    this.bounds = next
  }

  /** True when [start, end) is wholly inside one stored range. */
  covers(start: number, end: number): boolean {
    for (let i = 0; i < this.bounds.length; i += 2) {
      if ((this.bounds[i] as number) <= start && (this.bounds[i + 1] as number) >= end) return true
    }
    return false
  }

  get isEmpty(): boolean {
    return this.bounds.length === 0
  }

  /** Calls `fn` for each stored range that intersects [start, end), clipped to it. */
  forEachIn(start: number, end: number, fn: (s: number, e: number) => void): void {
    for (let i = 0; i < this.bounds.length; i += 2) {
      const s = Math.max(start, this.bounds[i] as number)
      const e = Math.min(end, this.bounds[i + 1] as number)
      if (s < e) fn(s, e)
    }
  }
}
