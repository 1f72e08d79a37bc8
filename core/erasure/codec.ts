/**
 * Systematic Reed–Solomon over GF(2^8): a chunk becomes k data shards (the
 * chunk itself, zero-padded to a multiple of k, cut in k equal parts) and m
 * parity shards; any k of the k+m rebuild the chunk. See
 * docs/adr/0002-reed-solomon-codec.md for the choice of matrix and kernel.
 */
import { Buffer } from 'node:buffer'
import { InvalidArgumentError, assert } from '../errors.js'
import { InsufficientShardsError, InvalidShardsError } from './errors.js'
import { tsKernel, type GfKernel } from './kernel.js'
import { encodingMatrix, invert, multiply, selectRows, type GfMatrix } from './matrix.js'

/** The most shards a chunk may have; shard indexes fit in 5 bits and matrices stay small. */
export const MAX_TOTAL_SHARDS = 32

export interface CodecInit {
  /** k ≥ 1: shards that hold the chunk's bytes. */
  dataShards: number
  /** m ≥ 0: parity shards; any m shards may be lost. */
  parityShards: number
}

export interface CodecComponents {
  /** The GF(2^8) kernel; pass `await loadKernel('wasm-simd')` for speed. @default tsKernel */
  kernel?: GfKernel
}

export interface ErasureCodec {
  readonly dataShards: number
  readonly parityShards: number
  readonly totalShards: number
  readonly kernel: GfKernel
  /** ceil(chunkLength / k): every shard of such a chunk has this size. */
  shardSizeBytes(chunkLength: number): number
  /**
   * The k+m shards of `chunk`, all ceil(len/k) bytes, views over one fresh
   * ArrayBuffer (shard i at offset i·size) so a worker can transfer them at once.
   * The caller keeps the chunk length; reconstruct() needs it.
   */
  encode(chunk: Uint8Array): Uint8Array[]
  /** encode() of each chunk, in one pass of the kernel: one result per chunk, each with its own ArrayBuffer. */
  encodeBatch(chunks: readonly Uint8Array[]): Uint8Array[][]
  /** The chunk from any k shards (missing ones undefined). */
  reconstruct(shards: readonly (Uint8Array | undefined)[], chunkLength: number): Uint8Array
  /** Shards at `indexes` (data or parity) recomputed from any k present shards: repair. */
  rebuildShards(shards: readonly (Uint8Array | undefined)[], indexes: readonly number[]): Uint8Array[]
}

/** A codec for k data and m parity shards. Invalid k or m → InvalidArgumentError. */
export function createCodec(init: CodecInit, components: CodecComponents = {}): ErasureCodec {
  const k = init.dataShards
  const m = init.parityShards
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > MAX_TOTAL_SHARDS) {
    throw new InvalidArgumentError(`need integers dataShards >= 1, parityShards >= 0, sum <= ${MAX_TOTAL_SHARDS}; got ${k}+${m}`)
  }
  return new RsCodec(k, m, components.kernel ?? tsKernel)
}

/** Bound on cached reconstruction matrices: one per erasure pattern seen. */
const DECODE_CACHE_ENTRIES_MAX = 256

class RsCodec implements ErasureCodec {
  readonly totalShards: number
  readonly #encoding: GfMatrix
  readonly #parityRows: GfMatrix
  readonly #decodeCache = new Map<string, GfMatrix>()

  constructor(
    readonly dataShards: number,
    readonly parityShards: number,
    readonly kernel: GfKernel,
  ) {
    this.totalShards = dataShards + parityShards
    this.#encoding = encodingMatrix(dataShards, parityShards)
    this.#parityRows = selectRows(this.#encoding, range(dataShards, this.totalShards))
  }

  shardSizeBytes(chunkLength: number): number {
    return Math.ceil(chunkLength / this.dataShards)
  }

  encode(chunk: Uint8Array): Uint8Array[] {
    return this.encodeBatch([chunk])[0] as Uint8Array[]
  }

  encodeBatch(chunks: readonly Uint8Array[]): Uint8Array[][] {
    if (!Array.isArray(chunks)) throw new InvalidArgumentError('encodeBatch: chunks must be an array')
    for (const chunk of chunks) if (!(chunk instanceof Uint8Array)) throw new InvalidArgumentError('encode: chunk must be a Uint8Array')
    const outputs = chunks.map((chunk) => uninitializedBytes(this.totalShards * this.shardSizeBytes(chunk.length)))
    // The kernel writes every byte of each output (data, zero padding, parity).
    this.kernel.encodeInto(this.#parityRows, chunks, outputs)
    return outputs.map((all, c) => {
      const size = this.shardSizeBytes((chunks[c] as Uint8Array).length)
      const shards: Uint8Array[] = []
      for (let i = 0; i < this.totalShards; i++) shards.push(all.subarray(i * size, (i + 1) * size))
      assert(all.length === shards.length * size, 'encode output is not k+m shards of one size')
      return shards
    })
  }

  reconstruct(shards: readonly (Uint8Array | undefined)[], chunkLength: number): Uint8Array {
    const size = this.#checkShards(shards)
    const present = shards.filter((s) => s !== undefined).length
    if (present < this.dataShards) throw new InsufficientShardsError(present, this.dataShards)
    if (!Number.isSafeInteger(chunkLength) || chunkLength < 0 || this.shardSizeBytes(chunkLength) !== size) {
      throw new InvalidShardsError(`chunk length ${chunkLength} does not match shard size ${size} for k=${this.dataShards}`)
    }
    // Every byte of the chunk is written below: present data shards are copied in
    // once, and lost ones are computed straight into their place.
    const chunk = uninitializedBytes(chunkLength)
    const pieces: Uint8Array[] = []
    const missing: number[] = []
    for (let i = 0; i < this.dataShards; i++) {
      const piece = chunk.subarray(Math.min(i * size, chunkLength), Math.min((i + 1) * size, chunkLength))
      pieces.push(piece)
      const shard = shards[i]
      if (shard === undefined) missing.push(i)
      else piece.set(piece.length === size ? shard : shard.subarray(0, piece.length))
    }
    if (missing.length === 0) return chunk
    // A shard cut short by the end of the chunk is rebuilt into scratch, then trimmed.
    const outputs = missing.map((i) => ((pieces[i] as Uint8Array).length === size ? (pieces[i] as Uint8Array) : new Uint8Array(size)))
    this.#rebuildInto(shards, missing, outputs)
    missing.forEach((i, r) => {
      const out = outputs[r] as Uint8Array
      const piece = pieces[i] as Uint8Array
      if (out !== piece) piece.set(out.subarray(0, piece.length))
    })
    return chunk
  }

  rebuildShards(shards: readonly (Uint8Array | undefined)[], indexes: readonly number[]): Uint8Array[] {
    const size = this.#checkShards(shards)
    const all = new Uint8Array(indexes.length * size)
    const outputs = indexes.map((_, r) => all.subarray(r * size, (r + 1) * size))
    this.#rebuildInto(shards, indexes, outputs)
    return outputs
  }

  /** Computes the shards at `indexes` into `outputs` from the lowest k present shards. */
  #rebuildInto(shards: readonly (Uint8Array | undefined)[], indexes: readonly number[], outputs: readonly Uint8Array[]): void {
    for (const i of indexes) {
      if (!Number.isInteger(i) || i < 0 || i >= this.totalShards) throw new InvalidShardsError(`shard index ${i} out of range 0..${this.totalShards - 1}`)
    }
    const present = range(0, this.totalShards).filter((i) => shards[i] !== undefined)
    if (present.length < this.dataShards) throw new InsufficientShardsError(present.length, this.dataShards)
    // The lowest k present indexes: data shards first, so the common case (a lost
    // parity shard, or one lost data shard) inverts a nearly-identity matrix.
    const use = present.slice(0, this.dataShards)
    const coeffs = this.#rebuildMatrix(use, indexes)
    this.kernel.mulRows(coeffs, use.map((i) => shards[i] as Uint8Array), outputs)
  }

  /**
   * Rows that turn the shards at `use` into the shards at `wanted`: the inverse of
   * the `use` rows of the encoding matrix gives the data shards, and the encoding
   * rows of `wanted` turn data into any shard.
   */
  #rebuildMatrix(use: readonly number[], wanted: readonly number[]): GfMatrix {
    const key = `${use.join(',')}>${wanted.join(',')}`
    const cached = this.#decodeCache.get(key)
    if (cached !== undefined) return cached
    const coeffs = multiply(selectRows(this.#encoding, wanted), invert(selectRows(this.#encoding, use)))
    if (this.#decodeCache.size >= DECODE_CACHE_ENTRIES_MAX) {
      this.#decodeCache.delete(this.#decodeCache.keys().next().value as string)
    }
    this.#decodeCache.set(key, coeffs)
    return coeffs
  }

  /** The common shard size; rejects a wrong count or shards of different sizes. */
  #checkShards(shards: readonly (Uint8Array | undefined)[]): number {
    if (!Array.isArray(shards) || shards.length !== this.totalShards) {
      throw new InvalidShardsError(`expected ${this.totalShards} shard slots, got ${Array.isArray(shards) ? shards.length : typeof shards}`)
    }
    let size: number | undefined
    for (const shard of shards) {
      if (shard === undefined) continue
      if (!(shard instanceof Uint8Array)) throw new InvalidShardsError('a shard must be a Uint8Array or undefined')
      size ??= shard.length
      if (shard.length !== size) throw new InvalidShardsError(`shards differ in size: ${size} and ${shard.length}`)
    }
    return size ?? 0
  }
}

/**
 * A fresh, exactly-sized ArrayBuffer of its own (so results transfer whole),
 * without the zero fill: callers overwrite every byte. For 64–96 KiB this
 * measured about 3× cheaper than `new Uint8Array(n)`, whose zeroing was half of
 * a 4+2 encode. A plain Uint8Array view, so results compare like any other.
 */
function uninitializedBytes(length: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(length)
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)
}
