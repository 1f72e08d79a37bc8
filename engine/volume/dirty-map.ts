/**
 * The dirty map: changes acknowledged to clients but not yet in the manifest.
 *
 * It has two generations. New records land in `active`; a flush *cuts* the map by
 * turning `active` into `flushing` (frozen: exactly the records up to the cut's
 * seq, with nothing newer mixed in) and starting a fresh `active`. Reads overlay
 * active over flushing over the stored chunk. So the cut is consistent without
 * copying a byte, and writes never wait for a flush unless the byte budget is spent.
 */
import { assert } from '../../core/errors.js'
import type { JournalOp } from '../contracts.js'
import { DirtyGeneration, type DirtyChunk } from './dirty-chunk.js'

/** A piece of a byte range that falls in one chunk. */
export interface ChunkPiece {
  index: number
  /** Offset inside the chunk. */
  start: number
  /** Exclusive end inside the chunk. */
  end: number
  /** Offset of the piece inside the whole range. */
  rangeOffset: number
}

/** Splits [offsetBytes, offsetBytes + lengthBytes) at chunk boundaries. */
export function chunkPieces(offsetBytes: number, lengthBytes: number, chunkSizeBytes: number): ChunkPiece[] {
  const pieces: ChunkPiece[] = []
  let done = 0
  while (done < lengthBytes) {
    const at = offsetBytes + done
    const index = Math.floor(at / chunkSizeBytes)
    const start = at - index * chunkSizeBytes
    const n = Math.min(chunkSizeBytes - start, lengthBytes - done)
    pieces.push({ index, start, end: start + n, rangeOffset: done })
    done += n
  }
  return pieces
}

export class DirtyMap {
  active: DirtyGeneration
  /** The generation being flushed, if any; frozen until the flush commits. */
  flushing: DirtyGeneration | undefined

  constructor(readonly chunkSizeBytes: number) {
    this.active = new DirtyGeneration(chunkSizeBytes)
  }

  /** Bytes held by both generations. */
  get costBytes(): number {
    return this.active.costBytes + (this.flushing?.costBytes ?? 0)
  }

  /** Applies a data record (write, trim, zero) to the active generation. */
  apply(op: JournalOp, seq: number): void {
    if (op.kind === 'resize') return
    const length = op.kind === 'write' ? op.data.length : op.lengthBytes
    for (const p of chunkPieces(op.offsetBytes, length, this.chunkSizeBytes)) {
      this.active.change(p.index, seq, (entry) => {
        if (op.kind === 'write') entry.write(p.start, op.data.subarray(p.rangeOffset, p.rangeOffset + p.end - p.start), seq)
        else entry.zero(p.start, p.end, seq)
      })
    }
    this.active.seq = Math.max(this.active.seq, seq)
  }

  /** Freezes the active generation for flushing. Only one flush runs at a time. */
  cut(): DirtyGeneration {
    assert(this.flushing === undefined, 'a dirty-map cut while another flush is pending')
    this.flushing = this.active
    this.active = new DirtyGeneration(this.chunkSizeBytes)
    return this.flushing
  }

  /** Drops the flushed generation once its changes are in the head. */
  committed(gen: DirtyGeneration): void {
    assert(this.flushing === gen, 'committing a generation that is not the one being flushed')
    this.flushing = undefined
  }

  /** The entries for `index`, newest first. */
  layers(index: number): DirtyChunk[] {
    const out: DirtyChunk[] = []
    const a = this.active.entries.get(index)
    if (a !== undefined) out.push(a)
    const f = this.flushing?.entries.get(index)
    if (f !== undefined) out.push(f)
    return out
  }
}

/**
 * How many of `layers` (newest first) a read of [start, end) must overlay, and
 * whether it also needs the stored chunk underneath.
 */
export function layersNeeded(layers: readonly DirtyChunk[], start: number, end: number): { count: number; needsStore: boolean } {
  for (let i = 0; i < layers.length; i++) {
    if ((layers[i] as DirtyChunk).defines(start, end)) return { count: i + 1, needsStore: false }
  }
  return { count: layers.length, needsStore: true }
}

/** Overlays `layers` (newest first) oldest-first onto `out`, which already holds what lies below. */
export function overlayLayers(layers: readonly DirtyChunk[], count: number, out: Uint8Array, outOffset: number, start: number, end: number): void {
  for (let i = count - 1; i >= 0; i--) (layers[i] as DirtyChunk).overlay(out, outOffset, start, end)
}
