/**
 * One chunk's pending changes in the dirty map, and a generation of them.
 *
 * An entry is either *complete* (it defines every byte of the chunk: a full
 * overwrite, or a zeroed chunk, which needs no buffer at all) or *partial* (a
 * buffer plus the byte ranges of it that are newer than the layer below). A
 * partial entry is merged with the stored chunk only when it is flushed or read.
 */
import { assert } from '../../core/errors.js'
import { RangeSet } from './range-set.js'

/**
 * What an entry without a buffer costs in the dirty-byte budget: the map entry
 * itself. It keeps the budget honest for long TRIMs, which create one entry per
 * chunk without allocating data.
 */
export const ENTRY_OVERHEAD_BYTES = 256

export class DirtyChunk {
  /** Seq of the newest change applied to this entry. */
  seq = 0
  /** Every byte is defined here; with no `data`, the chunk reads as zeroes. */
  complete = false
  /** Chunk-sized buffer; bytes outside `valid` are meaningless unless `complete`. */
  data: Buffer | undefined
  private valid = new RangeSet()

  constructor(readonly chunkSizeBytes: number) {}

  /** Bytes this entry holds against the dirty-map bound. */
  get costBytes(): number {
    return this.data === undefined ? ENTRY_OVERHEAD_BYTES : this.chunkSizeBytes + ENTRY_OVERHEAD_BYTES
  }

  /** Reads as zeroes with nothing below it mattering (a trimmed or zeroed chunk). */
  get isZero(): boolean {
    return this.complete && this.data === undefined
  }

  write(offsetInChunk: number, bytes: Uint8Array, seq: number): void {
    this.checkRange(offsetInChunk, offsetInChunk + bytes.length, seq)
    this.data ??= Buffer.alloc(this.chunkSizeBytes)
    this.data.set(bytes, offsetInChunk)
    this.markValid(offsetInChunk, offsetInChunk + bytes.length)
    this.seq = seq
  }

  zero(start: number, end: number, seq: number): void {
    this.checkRange(start, end, seq)
    this.seq = seq
    if (start === 0 && end === this.chunkSizeBytes) {
      // A whole-chunk zero frees the buffer: the flusher will remove the manifest entry.
      this.complete = true
      this.data = undefined
      this.valid = new RangeSet()
      return
    }
    if (this.isZero) return
    this.data ??= Buffer.alloc(this.chunkSizeBytes)
    this.data.fill(0, start, end)
    this.markValid(start, end)
    if (this.complete && isAllZero(this.data)) this.data = undefined
  }

  /** True when the bytes [start, end) are fully defined by this entry. */
  defines(start: number, end: number): boolean {
    return this.complete || this.valid.covers(start, end)
  }

  /** Copies this entry's defined bytes of [start, end) into `out` at `outOffset`. */
  overlay(out: Uint8Array, outOffset: number, start: number, end: number): void {
    if (this.complete) {
      if (this.data === undefined) out.fill(0, outOffset, outOffset + end - start)
      else out.set(this.data.subarray(start, end), outOffset)
      return
    }
    const data = this.data
    assert(data !== undefined, 'a partial dirty entry has a buffer')
    this.valid.forEachIn(start, end, (s, e) => out.set(data.subarray(s, e), outOffset + s - start))
  }

  private markValid(start: number, end: number): void {
    if (this.complete) return
    this.valid.add(start, end)
    if (this.valid.covers(0, this.chunkSizeBytes)) {
      this.complete = true
      this.valid = new RangeSet()
    }
  }

  private checkRange(start: number, end: number, seq: number): void {
    assert(start >= 0 && end <= this.chunkSizeBytes && start < end, `range [${start}, ${end}) outside the chunk`)
    assert(seq > this.seq, `dirty entry seq must increase: ${seq} after ${this.seq}`)
  }
}

/** The entries changed by the records of one seq interval, with their byte cost kept current. */
export class DirtyGeneration {
  readonly entries = new Map<number, DirtyChunk>()
  costBytes = 0
  /** Highest seq applied to this generation. */
  seq = 0

  constructor(readonly chunkSizeBytes: number) {}

  /** Runs `fn` on the entry for `index` (created on demand) and keeps the byte cost current. */
  change(index: number, seq: number, fn: (entry: DirtyChunk) => void): void {
    let entry = this.entries.get(index)
    if (entry === undefined) {
      entry = new DirtyChunk(this.chunkSizeBytes)
      this.entries.set(index, entry)
    } else {
      this.costBytes -= entry.costBytes
    }
    fn(entry)
    this.costBytes += entry.costBytes
    this.seq = Math.max(this.seq, seq)
  }
}

export function isAllZero(bytes: Uint8Array): boolean {
  // Compare 4 bytes at a time where alignment allows; chunks are large and this runs per flushed chunk.
  const words = bytes.byteOffset % 4 === 0 ? Math.floor(bytes.length / 4) : 0
  if (words > 0) {
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset, words)
    for (let i = 0; i < view.length; i++) if (view[i] !== 0) return false
  }
  for (let i = words * 4; i < bytes.length; i++) if (bytes[i] !== 0) return false
  return true
}
