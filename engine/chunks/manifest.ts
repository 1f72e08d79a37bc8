/**
 * The manifest: a volume's map from chunk index to chunk CID as a radix tree of
 * DAG-CBOR pages (manifest-page.ts) stored as chunks.
 *
 * Copy-on-write: an update fetches only the pages on changed paths, level by
 * level (one getChunks per level), re-encodes them bottom-up, computes their
 * CIDs locally and writes every new page in ONE putChunks call. Every other
 * page is shared with the old root, so a snapshot is a saved root.
 *
 * The tree is canonical: the root's level (the height) is the smallest that
 * holds the highest index, empty pages disappear from their parents and the
 * empty map is `null`. The same map therefore always has the same root CID,
 * and growing a volume only adds pages above the old root (leaves untouched).
 */
import type { CID } from 'multiformats/cid'
import { CID as CIDClass } from 'multiformats/cid'
import { chunkCid, cidKey, loadChunkHashers, RAW_CODEC, type ChunkHash } from '../../core/cid.js'
import { InvalidArgumentError, assert } from '../../core/errors.js'
import type { ChunkStore, ManifestStore } from '../contracts.js'
import { ByteLru } from './cache.js'
import { ManifestPageError } from './errors.js'
import { DAG_CBOR_CODEC, FANOUT_BITS, capacityAt, decodePage, encodePage, findSlot, heightFor, pageMemoryBytes, slotAt, type Page } from './manifest-page.js'

/** Default bound of the decoded-page cache (engine/host/memory-budget.ts counts it). */
export const MANIFEST_PAGE_CACHE_DEFAULT_BYTES = 16 * 1024 * 1024

export interface ManifestInit {
  /** Hash of page CIDs; must be the chunk store's policy hash (checked on every write). */
  hash: ChunkHash
  /** Memory of decoded pages kept, as pageMemoryBytes counts it (pages are immutable, so caching is always safe). @default 16777216 (16 MiB) */
  pageCacheMaxBytes?: number
  /** Pages fetched ahead while iterating entries or pages. @default 16 */
  prefetchPages?: number
}

export interface ManifestComponents {
  chunks: ChunkStore
}

/** A page being rebuilt by an update: its children are CIDs (untouched) or pages being rebuilt. */
interface Work {
  level: number
  /** CID of the page this replaces, to skip writing it when nothing changed. */
  oldCid: CID | undefined
  entries: Map<number, CID | Work>
}

interface Built {
  cid: CID
  bytes: Uint8Array
  page: Page
}

type Change = readonly [number, CID | null]

export class MerkleManifest implements ManifestStore {
  readonly #hash: ChunkHash
  readonly #chunks: ChunkStore
  readonly #cache: ByteLru<Page>
  readonly #prefetch: number

  constructor(init: ManifestInit, components: ManifestComponents) {
    if (init.hash !== 'sha2-256' && init.hash !== 'blake3') throw new InvalidArgumentError(`unsupported hash ${JSON.stringify(init.hash)}`)
    this.#hash = init.hash
    this.#chunks = components.chunks
    this.#cache = new ByteLru<Page>({ maxBytes: init.pageCacheMaxBytes ?? MANIFEST_PAGE_CACHE_DEFAULT_BYTES, sizeOf: pageMemoryBytes })
    this.#prefetch = init.prefetchPages ?? 16
    if (!Number.isSafeInteger(this.#prefetch) || this.#prefetch < 1) throw new InvalidArgumentError(`prefetchPages must be a positive integer, got ${this.#prefetch}`)
  }

  /** Drops the decoded pages (tests; memory pressure). */
  clearCache(): void {
    this.#cache.clear()
  }

  async lookup(root: CID | null, indexes: readonly number[]): Promise<(CID | undefined)[]> {
    checkRoot(root)
    if (!Array.isArray(indexes)) throw new InvalidArgumentError('indexes must be an array')
    indexes.forEach(checkIndex)
    const results = new Array<CID | undefined>(indexes.length).fill(undefined)
    if (root === null || indexes.length === 0) return results
    const [rootPage] = await this.#getPages([root])
    const top = rootPage as Page
    let frontier: { page: Page; items: number[] }[] = [{ page: top, items: indexes.map((_, i) => i).filter((i) => (indexes[i] as number) < capacityAt(top.level)) }]
    while (frontier.length > 0) {
      const next = new Map<string, { cid: CID; level: number; items: number[] }>()
      for (const { page, items } of frontier) {
        for (const pos of items) {
          const at = findSlot(page, slotAt(indexes[pos] as number, page.level))
          if (at < 0) continue
          const link = page.links[at] as CID
          if (page.level === 0) results[pos] = link
          else {
            const key = cidKey(link)
            const entry = next.get(key) ?? { cid: link, level: page.level - 1, items: [] }
            entry.items.push(pos)
            next.set(key, entry)
          }
        }
      }
      const wanted = [...next.values()]
      const pages = await this.#getPages(wanted.map((w) => w.cid))
      frontier = wanted.map((w, i) => ({ page: expectLevel(pages[i] as Page, w.level, w.cid), items: w.items }))
    }
    return results
  }

  async update(root: CID | null, changes: ReadonlyMap<number, CID | null>): Promise<CID | null> {
    checkRoot(root)
    const sorted = validateChanges(changes)
    if (sorted.length === 0) return root
    if (this.#hash === 'blake3') await loadChunkHashers()
    const top = await this.#planTop(root, sorted)
    if (top === null) return null
    await this.#descend(top, sorted)
    const built = new Map<string, Built>()
    let newRoot = this.#build(top, built)
    newRoot = newRoot === null ? null : await this.#collapse(newRoot, built)
    if (newRoot === null) return null
    await this.#write(newRoot, built)
    return newRoot
  }

  async *entries(root: CID | null, fromIndex: number, toIndex: number): AsyncIterable<[number, CID]> {
    checkRoot(root)
    checkIndex(fromIndex)
    if (!Number.isSafeInteger(toIndex) || toIndex < fromIndex) throw new InvalidArgumentError(`toIndex must be a safe integer >= fromIndex, got ${toIndex}`)
    if (root === null || fromIndex === toIndex) return
    const [page] = await this.#getPages([root])
    yield* this.#walkEntries(page as Page, 0, fromIndex, toIndex)
  }

  async *pages(root: CID | null): AsyncIterable<CID> {
    checkRoot(root)
    if (root === null) return
    yield root
    const [page] = await this.#getPages([root])
    yield* this.#walkPages(page as Page)
  }

  // ---------------------------------------------------------------- reads

  /** Pages by CID, from the cache or in one getChunks call, decoded and validated. */
  async #getPages(cids: readonly CID[]): Promise<Page[]> {
    const out = new Array<Page | undefined>(cids.length)
    const keys = cids.map(cidKey)
    const missing = new Map<string, CID>()
    cids.forEach((cid, i) => {
      const key = keys[i] as string
      const hit = this.#cache.get(key)
      if (hit !== undefined) out[i] = hit
      else missing.set(key, cid)
    })
    if (missing.size > 0) {
      const bytes = await this.#chunks.getChunks([...missing.values()])
      const decoded = new Map<string, Page>()
      ;[...missing].forEach(([key, cid], i) => {
        const page = decodePage(bytes[i] as Uint8Array, cid)
        decoded.set(key, page)
        this.#cache.set(key, page)
      })
      keys.forEach((key, i) => {
        out[i] ??= decoded.get(key)
      })
    }
    return out as Page[]
  }

  /** Children of `page` whose index range meets [from, to), fetched `prefetch` pages at a time. */
  async *#walkEntries(page: Page, base: number, from: number, to: number): AsyncGenerator<[number, CID]> {
    const span = 2 ** (FANOUT_BITS * page.level)
    const inRange: number[] = []
    page.slots.forEach((slot, i) => {
      const start = base + slot * span
      if (start < to && start + span > from) inRange.push(i)
    })
    if (page.level === 0) {
      for (const i of inRange) yield [base + (page.slots[i] as number), page.links[i] as CID]
      return
    }
    for (let at = 0; at < inRange.length; at += this.#prefetch) {
      const group = inRange.slice(at, at + this.#prefetch)
      const children = await this.#getPages(group.map((i) => page.links[i] as CID))
      for (let j = 0; j < group.length; j++) {
        const i = group[j] as number
        const child = expectLevel(children[j] as Page, page.level - 1, page.links[i] as CID)
        yield* this.#walkEntries(child, base + (page.slots[i] as number) * span, from, to)
      }
    }
  }

  /** Every page below `page`; leaves are named by their parents and never fetched. */
  async *#walkPages(page: Page): AsyncGenerator<CID> {
    if (page.level === 0) return
    for (let at = 0; at < page.links.length; at += this.#prefetch) {
      const group = page.links.slice(at, at + this.#prefetch)
      yield* group
      if (page.level === 1) continue
      const children = await this.#getPages(group)
      for (let j = 0; j < group.length; j++) yield* this.#walkPages(expectLevel(children[j] as Page, page.level - 1, group[j] as CID))
    }
  }

  // ---------------------------------------------------------------- updates

  /** The top of the rebuilt tree: the old root's page, or new levels above it when an index outgrows the height. */
  async #planTop(root: CID | null, sorted: readonly Change[]): Promise<Work | null> {
    let maxSet = -1
    for (const [index, value] of sorted) if (value !== null && index > maxSet) maxSet = index
    if (root === null) return maxSet < 0 ? null : { level: heightFor(maxSet), oldCid: undefined, entries: new Map() }
    const [rootPage] = await this.#getPages([root])
    const old = rootPage as Page
    const height = Math.max(old.level, maxSet < 0 ? 0 : heightFor(maxSet))
    if (height === old.level) return workFromPage(old, root)
    // Growing: every old index is below capacityAt(old.level), so the old root is slot 0 of each new level.
    const top: Work = { level: height, oldCid: undefined, entries: new Map() }
    let cur = top
    for (let level = height - 1; level > old.level; level--) {
      const below: Work = { level, oldCid: undefined, entries: new Map() }
      cur.entries.set(0, below)
      cur = below
    }
    cur.entries.set(0, root)
    return top
  }

  /** Pushes the changes down level by level, fetching each level's touched pages in one batch. */
  async #descend(top: Work, sorted: readonly Change[]): Promise<void> {
    let frontier: { work: Work; changes: Change[] }[] = [{ work: top, changes: sorted.filter(([index]) => index < capacityAt(top.level)) }]
    while (frontier.length > 0) {
      const next: { work: Work; changes: Change[] }[] = []
      const toFetch: { parent: Work; slot: number; cid: CID; changes: Change[] }[] = []
      for (const { work, changes } of frontier) {
        if (work.level === 0) {
          for (const [index, value] of changes) {
            if (value === null) work.entries.delete(slotAt(index, 0))
            else work.entries.set(slotAt(index, 0), value)
          }
          continue
        }
        for (const [slot, group] of groupBySlot(changes, work.level)) {
          const child = work.entries.get(slot)
          if (child === undefined) {
            // Removing from a subtree that does not exist changes nothing.
            if (!group.some(([, v]) => v !== null)) continue
            const fresh: Work = { level: work.level - 1, oldCid: undefined, entries: new Map() }
            work.entries.set(slot, fresh)
            next.push({ work: fresh, changes: group })
          } else if (isWork(child)) next.push({ work: child, changes: group })
          else toFetch.push({ parent: work, slot, cid: child, changes: group })
        }
      }
      const pages = await this.#getPages(toFetch.map((f) => f.cid))
      toFetch.forEach((f, i) => {
        const work = workFromPage(expectLevel(pages[i] as Page, f.parent.level - 1, f.cid), f.cid)
        f.parent.entries.set(f.slot, work)
        next.push({ work, changes: f.changes })
      })
      frontier = next
    }
  }

  /** Encodes the rebuilt pages bottom-up; @returns the page's CID, or null when it became empty. */
  #build(work: Work, built: Map<string, Built>): CID | null {
    const slots: number[] = []
    const links: CID[] = []
    for (const slot of [...work.entries.keys()].sort((a, b) => a - b)) {
      const child = work.entries.get(slot) as CID | Work
      const cid = isWork(child) ? this.#build(child, built) : child
      if (cid === null) continue
      slots.push(slot)
      links.push(cid)
    }
    if (slots.length === 0) return null
    const bytes = encodePage(work.level, slots, links)
    const cid = chunkCid(bytes, this.#hash, DAG_CBOR_CODEC)
    if (work.oldCid === undefined || !work.oldCid.equals(cid)) built.set(cidKey(cid), { cid, bytes, page: { level: work.level, slots, links, sizeBytes: bytes.byteLength } })
    return cid
  }

  /** Drops root pages whose only child is slot 0, so the height stays the smallest that holds the map. */
  async #collapse(root: CID, built: Map<string, Built>): Promise<CID> {
    for (;;) {
      const page = built.get(cidKey(root))?.page ?? (await this.#getPages([root]))[0]
      const top = page as Page
      if (top.level === 0 || top.slots.length !== 1 || top.slots[0] !== 0) return root
      root = top.links[0] as CID
    }
  }

  /** Writes the new pages reachable from `root` in one putChunks call, and caches them. */
  async #write(root: CID, built: Map<string, Built>): Promise<void> {
    const reachable: Built[] = []
    const seen = new Set<string>()
    const visit = (cid: CID): void => {
      const key = cidKey(cid)
      const b = built.get(key)
      if (b === undefined || seen.has(key)) return
      seen.add(key)
      reachable.push(b)
      if (b.page.level > 0) b.page.links.forEach(visit)
    }
    visit(root)
    if (reachable.length === 0) return
    const cids = await this.#chunks.putChunks(
      reachable.map((b) => b.bytes),
      'dag-cbor',
    )
    cids.forEach((cid, i) => assert(cid.equals((reachable[i] as Built).cid), 'chunk store named a page differently: its hash is not the manifest hash'))
    for (const b of reachable) this.#cache.set(cidKey(b.cid), b.page)
  }
}

function isWork(x: CID | Work): x is Work {
  return !(x instanceof CIDClass) && (x as Work).entries instanceof Map
}

function workFromPage(page: Page, cid: CID): Work {
  const entries = new Map<number, CID | Work>()
  page.slots.forEach((slot, i) => entries.set(slot, page.links[i] as CID))
  return { level: page.level, oldCid: cid, entries }
}

function groupBySlot(changes: readonly Change[], level: number): Map<number, Change[]> {
  const groups = new Map<number, Change[]>()
  for (const c of changes) {
    const slot = slotAt(c[0], level)
    const g = groups.get(slot) ?? []
    g.push(c)
    groups.set(slot, g)
  }
  return groups
}

function expectLevel(page: Page, level: number, cid: CID): Page {
  if (page.level !== level) throw new ManifestPageError(`page ${cid.toString()} is at level ${page.level} where level ${level} belongs`)
  return page
}

function checkRoot(root: CID | null): void {
  if (root === null) return
  const cid = CIDClass.asCID(root)
  if (cid === null || cid.version !== 1 || cid.code !== DAG_CBOR_CODEC) throw new InvalidArgumentError('manifest root must be null or a dag-cbor CIDv1')
}

function checkIndex(index: number, position?: number): void {
  if (!Number.isSafeInteger(index) || index < 0) throw new InvalidArgumentError(`chunk index${position === undefined ? '' : ` ${position}`} must be a non-negative safe integer, got ${String(index)}`)
}

/** The changes in ascending index order; raw CIDv1 values or null. */
function validateChanges(changes: ReadonlyMap<number, CID | null>): Change[] {
  if (!(changes instanceof Map)) throw new InvalidArgumentError('changes must be a Map')
  const sorted: Change[] = []
  for (const [index, value] of changes) {
    checkIndex(index)
    if (value !== null) {
      const cid = CIDClass.asCID(value)
      if (cid === null || cid.version !== 1 || cid.code !== RAW_CODEC) throw new InvalidArgumentError(`value at index ${index} must be null or a raw CIDv1`)
    }
    sorted.push([index, value])
  }
  return sorted.sort((a, b) => a[0] - b[0])
}
