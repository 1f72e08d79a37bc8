/**
 * The manifest page format (version 1): one DAG-CBOR map per page,
 *
 *   { version: 1, level: L, slots: [s0, s1, …], links: [CID, CID, …] }
 *
 * `slots` are the non-empty child positions (strictly ascending, < FANOUT) and
 * `links[i]` is the child at `slots[i]`: a data chunk (raw CID) on a leaf
 * (level 0), a page (dag-cbor CID) above. Links are real CIDs (tag 42), so a
 * page is a valid IPFS block and any IPLD walker can follow it. The root's
 * level is the tree's height. DAG-CBOR maps only take string keys, hence two
 * parallel arrays rather than a map from slot to link.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { RAW_CODEC } from '../../core/cid.js'
import { ManifestPageError } from './errors.js'

export const PAGE_FORMAT_VERSION = 1
/** Children per page. A full leaf is about 45 KiB: one page fits one 64 KiB chunk (docs/adr/0010). */
export const FANOUT = 1024
/** log2(FANOUT) */
export const FANOUT_BITS = 10
/** Highest level: 1024^6 = 2^60 covers every safe integer index. */
export const LEVEL_MAX = 5
export const DAG_CBOR_CODEC = dagCbor.code

/** A decoded, validated page. Treat as immutable: pages are cached and shared. */
export interface Page {
  readonly level: number
  readonly slots: readonly number[]
  readonly links: readonly CID[]
  /** Encoded size in bytes. */
  readonly sizeBytes: number
}

/**
 * Memory a decoded link holds beyond the encoded page: its CID object, multihash digest,
 * byte views and their own 36-byte buffer, and the slot number. Measured with a forced GC
 * over 200 decoded pages of 1024 links (Node 20): 611 bytes of heap and 29 of ArrayBuffer
 * a link, rounded up. Sixteen times the ~44 encoded bytes a link takes, so a cache that
 * counted encoded bytes held sixteen times its bound (manifest-memory.test.ts).
 */
export const PAGE_LINK_MEMORY_BYTES = 704

/** What a decoded page costs in memory: what the page cache counts against its bound. */
export function pageMemoryBytes(page: Page): number {
  return page.sizeBytes + page.links.length * PAGE_LINK_MEMORY_BYTES
}

/** Indexes one page at `level` spans: FANOUT^(level+1). */
export function capacityAt(level: number): number {
  return 2 ** (FANOUT_BITS * (level + 1))
}

/** The child slot of `index` in a page at `level`. Exact: division by a power of two. */
export function slotAt(index: number, level: number): number {
  return Math.floor(index / 2 ** (FANOUT_BITS * level)) % FANOUT
}

/** The smallest tree height that holds `index`. */
export function heightFor(index: number): number {
  let level = 0
  while (index >= capacityAt(level)) level++
  return level
}

/** Position of `slot` in the page's slots, or -1. */
export function findSlot(page: Page, slot: number): number {
  let lo = 0
  let hi = page.slots.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const s = page.slots[mid] as number
    if (s === slot) return mid
    if (s < slot) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

export function encodePage(level: number, slots: readonly number[], links: readonly CID[]): Uint8Array {
  return dagCbor.encode({ version: PAGE_FORMAT_VERSION, level, slots, links })
}

/**
 * Decodes and validates a page whose bytes already matched its CID.
 * @throws ManifestPageError when it is not a well-formed version-1 page
 */
export function decodePage(bytes: Uint8Array, cid: CID): Page {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new ManifestPageError(`page ${cid.toString()} is not DAG-CBOR`, { cause: err })
  }
  const bad = (why: string): ManifestPageError => new ManifestPageError(`page ${cid.toString()}: ${why}`)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('not a map')
  const { version, level, slots, links } = value as Record<string, unknown>
  if (Object.keys(value).length !== 4) throw bad('unexpected fields')
  if (version !== PAGE_FORMAT_VERSION) throw bad(`unsupported version ${String(version)}`)
  if (typeof level !== 'number' || !Number.isInteger(level) || level < 0 || level > LEVEL_MAX) throw bad(`bad level ${String(level)}`)
  if (!Array.isArray(slots) || !Array.isArray(links) || slots.length !== links.length || slots.length === 0) throw bad('slots and links must be non-empty arrays of equal length')
  let previous = -1
  for (const s of slots) {
    if (typeof s !== 'number' || !Number.isInteger(s) || s <= previous || s >= FANOUT) throw bad('slots must ascend strictly within the fanout')
    previous = s
  }
  const childCodec = level === 0 ? RAW_CODEC : DAG_CBOR_CODEC
  const cids = links.map((l) => {
    const c = CID.asCID(l)
    if (c === null || c.version !== 1 || c.code !== childCodec) throw bad(`links at level ${level} must be CIDv1 with codec 0x${childCodec.toString(16)}`)
    return c
  })
  return { level, slots: slots as number[], links: cids, sizeBytes: bytes.byteLength }
}
