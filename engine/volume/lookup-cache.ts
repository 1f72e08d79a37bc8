/**
 * Chunk index → CID lookups of the volume's current manifest root.
 *
 * The flusher knows exactly which entries a new root changed, so it moves the
 * cache forward instead of emptying it. Results fetched for an older root are
 * discarded: a read that started before a flush must not poison the cache.
 */
import type { CID } from 'multiformats/cid'
import type { ManifestStore } from '../contracts.js'

export class LookupCache {
  /** null: no entry (reads as zeroes). Map order is the LRU order. */
  private readonly entries = new Map<number, CID | null>()
  private root: CID | null

  constructor(
    private readonly manifest: ManifestStore,
    root: CID | null,
    private readonly capacity: number,
  ) {
    this.root = root
  }

  get currentRoot(): CID | null {
    return this.root
  }

  /** The CIDs of `indexes` under `root`; the cache serves only the current root. */
  async lookup(root: CID | null, indexes: readonly number[]): Promise<(CID | undefined)[]> {
    if (root === null) return indexes.map(() => undefined)
    const current = this.root !== null && root.equals(this.root)
    const out: (CID | undefined)[] = new Array(indexes.length)
    const missing: number[] = []
    indexes.forEach((index, i) => {
      const hit = current ? this.entries.get(index) : undefined
      if (hit === undefined) {
        missing.push(i)
        return
      }
      this.touch(index, hit)
      out[i] = hit ?? undefined
    })
    if (missing.length === 0) return out
    const found = await this.manifest.lookup(root, missing.map((i) => indexes[i] as number))
    const stillCurrent = this.root !== null && root.equals(this.root)
    missing.forEach((i, j) => {
      const cid = found[j]
      out[i] = cid
      if (stillCurrent) this.touch(indexes[i] as number, cid ?? null)
    })
    return out
  }

  /** Moves to `root`, which is the old root with `changes` applied. */
  advance(root: CID | null, changes: ReadonlyMap<number, CID | null>): void {
    this.root = root
    for (const [index, cid] of changes) this.touch(index, cid)
  }

  private touch(index: number, cid: CID | null): void {
    this.entries.delete(index)
    this.entries.set(index, cid)
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next()
      if (!oldest.done) this.entries.delete(oldest.value)
    }
  }
}
