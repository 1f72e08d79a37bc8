/**
 * Systematic Reed–Solomon over GF(2^8): a chunk becomes k data shards (the
 * chunk itself, zero-padded to a multiple of k, cut in k equal parts) and m
 * parity shards; any k of the k+m rebuild the chunk. See
 * docs/adr/0002-reed-solomon-codec.md for the choice of matrix and kernel.
 */
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
    if (!(chunk instanceof Uint8Array)) throw new InvalidArgumentError('encode: chunk must be a Uint8Array')
    const size = this.shardSizeBytes(chunk.length)
    const all = new Uint8Array(this.totalShards * size)
    all.set(chunk)
    const shards = range(0, this.totalShards).map((i) => all.subarray(i * size, (i + 1) * size))
    this.kernel.mulRows(this.#parityRows, shards.slice(0, this.dataShards), shards.slice(this.dataShards))
    assert(shards.length === this.totalShards, 'encode produced the wrong number of shards')
    return shards
  }

  reconstruct(shards: readonly (Uint8Array | undefined)[], chunkLength: number): Uint8Array {
    const size = this.#checkShards(shards)
    const present = shards.filter((s) => s !== undefined).length
    if (present < this.dataShards) throw new InsufficientShardsError(present, this.dataShards)
    if (!Number.isSafeInteger(chunkLength) || chunkLength < 0 || this.shardSizeBytes(chunkLength) !== size) {
      throw new InvalidShardsError(`chunk length ${chunkLength} does not match shard size ${size} for k=${this.dataShards}`)
    }
    const missing = range(0, this.dataShards).filter((i) => shards[i] === undefined)
    const rebuilt = missing.length > 0 ? this.rebuildShards(shards, missing) : []
    const data = range(0, this.dataShards).map((i) => shards[i] ?? (rebuilt[missing.indexOf(i)] as Uint8Array))
    const chunk = new Uint8Array(chunkLength)
    for (let i = 0; i < this.dataShards; i++) {
      const start = i * size
      if (start >= chunkLength) break
      chunk.set((data[i] as Uint8Array).subarray(0, Math.min(size, chunkLength - start)), start)
    }
    return chunk
  }

  rebuildShards(shards: readonly (Uint8Array | undefined)[], indexes: readonly number[]): Uint8Array[] {
    const size = this.#checkShards(shards)
    for (const i of indexes) {
      if (!Number.isInteger(i) || i < 0 || i >= this.totalShards) throw new InvalidShardsError(`shard index ${i} out of range 0..${this.totalShards - 1}`)
    }
    const present = range(0, this.totalShards).filter((i) => shards[i] !== undefined)
    if (present.length < this.dataShards) throw new InsufficientShardsError(present.length, this.dataShards)
    // The lowest k present indexes: data shards first, so the common case (a lost
    // parity shard, or one lost data shard) inverts a nearly-identity matrix.
    const use = present.slice(0, this.dataShards)
    const coeffs = this.#rebuildMatrix(use, indexes)
    const all = new Uint8Array(indexes.length * size)
    const outputs = indexes.map((_, r) => all.subarray(r * size, (r + 1) * size))
    this.kernel.mulRows(coeffs, use.map((i) => shards[i] as Uint8Array), outputs)
    return outputs
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

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)
}
