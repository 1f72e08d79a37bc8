/**
 * The mark phase: walks every manifest reachable from the roots and records
 * each page CID and each data chunk CID, then builds the Bloom filter the
 * storage nodes sweep against.
 *
 * Each page is fetched once however many roots share it (snapshots and clones
 * share almost every page), a batch of pages per chunk-store call. The filter
 * must be sized before the first insert, so chunk CIDs are first kept in a
 * compact arena (the binary CIDs back to back); leaves whose entries do not fit
 * in the arena's budget are only counted, and fetched a second time to insert.
 * Memory stays bounded by the arena budget plus the filter.
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../../core/cid.js'
import { BloomFilter } from '../../core/bloom-filter.js'
import { CairnError, InvalidArgumentError, assert } from '../../core/errors.js'
import type { ChunkStore } from '../contracts.js'
import { decodePage, type Page } from '../chunks/manifest-page.js'
import type { ManifestRoot } from './roots.js'

/** The chunk store of one storage policy, to read pages with. */
export type PageReaderFor = (policy: string) => Promise<Pick<ChunkStore, 'getChunks'>>

export interface MarkOptions {
  /** Target false-positive rate of the filter. @default 1e-4 */
  falsePositiveRate?: number
  /** Pages per chunk-store call. @default 64 */
  pagesPerBatch?: number
  /** Bytes of chunk CIDs kept between the walk and the filter build; the rest are fetched again. @default 268435456 (256 MiB) */
  arenaBytesMax?: number
  /** The filter's salt (tests); @default random per run */
  salt?: Uint8Array
  signal?: AbortSignal
}

export interface MarkResult {
  filter: BloomFilter
  /** Chunk references marked: entries of distinct leaf pages plus pinned chunks. */
  markedChunks: number
  /** Distinct manifest pages marked. */
  markedPages: number
  /** Leaf pages fetched twice because the arena was full. */
  refetchedLeaves: number
}

/** A root's pages could not be read with any of the block store's policies. */
export class GcRootUnreadableError extends CairnError {
  override readonly name = 'GcRootUnreadableError'
  readonly kind = 'unavailable'
}

/** Binary CIDs back to back, each after a one-byte length, in blocks of 1 MiB. */
class CidArena {
  readonly #blocks: Uint8Array[] = []
  #used = 0
  #bytes = 0
  count = 0

  constructor(private readonly bytesMax: number) {}

  /** Appends every CID, or none when they would exceed the budget. */
  tryAddAll(cids: readonly CID[]): boolean {
    let need = 0
    for (const c of cids) need += c.bytes.byteLength + 1
    if (this.#bytes + need > this.bytesMax) return false
    for (const c of cids) this.#push(c.bytes)
    return true
  }

  #push(bytes: Uint8Array): void {
    assert(bytes.byteLength < 256, 'a CID longer than 255 bytes')
    let block = this.#blocks[this.#blocks.length - 1]
    if (block === undefined || this.#used + bytes.byteLength + 1 > block.byteLength) {
      block = new Uint8Array(1 << 20)
      this.#blocks.push(block)
      this.#used = 0
    }
    block[this.#used] = bytes.byteLength
    block.set(bytes, this.#used + 1)
    this.#used += bytes.byteLength + 1
    this.#bytes += bytes.byteLength + 1
    this.count++
  }

  forEach(fn: (cid: Uint8Array) => void): void {
    this.#blocks.forEach((block, b) => {
      const end = b === this.#blocks.length - 1 ? this.#used : block.byteLength
      for (let at = 0; at < end && block[at] !== 0; at += block[at]! + 1) fn(block.subarray(at + 1, at + 1 + block[at]!))
    })
  }
}

/** One mark over a set of roots; walk() may be called again with roots learnt later. */
export class Marker {
  readonly #read: PageReaderFor
  readonly #policies: () => readonly string[]
  readonly #batch: number
  readonly #signal: AbortSignal | undefined
  readonly #visited = new Set<string>()
  readonly #pages: CID[] = []
  readonly #arena: CidArena
  /** Leaves whose entries did not fit in the arena, with the policy that read them. */
  readonly #spilled: { cid: CID; policy: string; entries: number }[] = []
  #spilledEntries = 0
  /** Pinned raw chunks (at most PINS_MAX). */
  readonly #pinnedChunks: CID[] = []

  constructor(read: PageReaderFor, policies: () => readonly string[], options: MarkOptions = {}) {
    this.#read = read
    this.#policies = policies
    this.#batch = options.pagesPerBatch ?? 64
    this.#signal = options.signal
    const arenaBytesMax = options.arenaBytesMax ?? 256 * 1024 * 1024
    if (!Number.isSafeInteger(this.#batch) || this.#batch < 1) throw new InvalidArgumentError(`pagesPerBatch must be a positive integer, got ${this.#batch}`)
    if (!Number.isSafeInteger(arenaBytesMax) || arenaBytesMax < 0) throw new InvalidArgumentError(`arenaBytesMax must be a non-negative integer, got ${arenaBytesMax}`)
    this.#arena = new CidArena(arenaBytesMax)
  }

  /** Pinned raw chunks: marked alone. */
  markChunks(cids: readonly CID[]): void {
    for (const cid of cids) {
      const key = cidKey(cid)
      if (this.#visited.has(key)) continue
      this.#visited.add(key)
      this.#pinnedChunks.push(cid)
    }
  }

  /** Walks every root not walked yet, level by level, each page once; returns how many pages were new. */
  async walk(roots: readonly ManifestRoot[]): Promise<number> {
    const before = this.#visited.size
    let frontier: { cid: CID; policy: string | undefined }[] = []
    for (const r of roots) if (this.#visit(r.cid)) frontier.push({ cid: r.cid, policy: r.policy })
    while (frontier.length > 0) {
      const next: typeof frontier = []
      for (let at = 0; at < frontier.length; at += this.#batch) {
        this.#signal?.throwIfAborted()
        const group = frontier.slice(at, at + this.#batch)
        const pages = await this.#fetch(group)
        pages.forEach(({ page, policy }, i) => {
          const cid = group[i]!.cid
          this.#pages.push(cid)
          if (page.level === 0) this.#keepLeaf(cid, page, policy)
          else for (const child of page.links) if (this.#visit(child)) next.push({ cid: child, policy })
        })
      }
      frontier = next
    }
    return this.#visited.size - before
  }

  /** Sizes the filter from what was walked and fills it; fetches spilled leaves again. */
  async build(options: Pick<MarkOptions, 'falsePositiveRate' | 'salt'> = {}): Promise<MarkResult> {
    const keys = this.#arena.count + this.#spilledEntries + this.#pages.length + this.#pinnedChunks.length
    const filter = BloomFilter.create(keys, options.falsePositiveRate ?? 1e-4, ...(options.salt === undefined ? [] : [options.salt]))
    this.#arena.forEach((cid) => filter.add(cid))
    for (const cid of this.#pages) filter.add(cid.bytes)
    for (const cid of this.#pinnedChunks) filter.add(cid.bytes)
    for (let at = 0; at < this.#spilled.length; at += this.#batch) {
      this.#signal?.throwIfAborted()
      const group = this.#spilled.slice(at, at + this.#batch)
      const pages = await this.#fetch(group)
      pages.forEach(({ page }, i) => {
        assert(page.links.length === group[i]!.entries, 'a leaf page changed between two reads of one CID')
        for (const link of page.links) filter.add(link.bytes)
      })
    }
    const markedChunks = this.#arena.count + this.#spilledEntries + this.#pinnedChunks.length
    return { filter, markedChunks, markedPages: this.#pages.length, refetchedLeaves: this.#spilled.length }
  }

  #visit(cid: CID): boolean {
    const key = cidKey(cid)
    if (this.#visited.has(key)) return false
    this.#visited.add(key)
    return true
  }

  #keepLeaf(cid: CID, page: Page, policy: string): void {
    if (this.#arena.tryAddAll(page.links)) return
    this.#spilled.push({ cid, policy, entries: page.links.length })
    this.#spilledEntries += page.links.length
  }

  /** Decoded pages of `group`, each read with its policy's store, or (a pin) the first policy that can. */
  async #fetch(group: readonly { cid: CID; policy: string | undefined }[]): Promise<{ page: Page; policy: string }[]> {
    const byPolicy = new Map<string, number[]>()
    const out = new Array<{ page: Page; policy: string }>(group.length)
    const unknown: number[] = []
    group.forEach((g, i) => {
      if (g.policy === undefined) unknown.push(i)
      else byPolicy.set(g.policy, [...(byPolicy.get(g.policy) ?? []), i])
    })
    for (const [policy, positions] of byPolicy) {
      const bytes = await (await this.#read(policy)).getChunks(positions.map((i) => group[i]!.cid))
      positions.forEach((i, j) => (out[i] = { page: decodePage(bytes[j]!, group[i]!.cid), policy }))
    }
    for (const i of unknown) out[i] = await this.#fetchAnyPolicy(group[i]!.cid)
    return out
  }

  async #fetchAnyPolicy(cid: CID): Promise<{ page: Page; policy: string }> {
    let last: unknown
    for (const policy of this.#policies()) {
      try {
        const [bytes] = await (await this.#read(policy)).getChunks([cid])
        return { page: decodePage(bytes!, cid), policy }
      } catch (err) {
        last = err
      }
    }
    throw new GcRootUnreadableError(`pinned page ${cid.toString()} cannot be read with any storage policy of the block store`, { cause: last })
  }
}
