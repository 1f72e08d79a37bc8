/**
 * The one operation a Reed–Solomon codec spends its time in: multiply a set of
 * input shards by a coefficient matrix. Encoding uses the parity rows of the
 * encoding matrix; reconstruction uses rows of an inverted submatrix.
 * Implementations are interchangeable and cross-checked byte for byte in tests.
 */
import { MUL_TABLE } from './gf256.js'
import type { GfMatrix } from './matrix.js'
import { assert } from '../errors.js'

export type KernelName = 'ts' | 'wasm-simd'

export interface GfKernel {
  readonly name: KernelName
  /**
   * outputs[r] = Σ_j coeffs[r][j] · inputs[j] over GF(2^8). Every buffer has the
   * same length; outputs must not alias inputs.
   */
  mulRows(coeffs: GfMatrix, inputs: readonly Uint8Array[], outputs: readonly Uint8Array[]): void
  /**
   * Systematic encode of a batch. `outputs[i]` holds the k+m shards of
   * `chunks[i]` back to back (k+m = parity.cols + parity.rows, shard size =
   * outputs[i].length / (k+m) = ceil(chunks[i].length / k)); every byte of it is
   * written: the chunk, its zero padding to k shards, then the parity rows.
   */
  encodeInto(parity: GfMatrix, chunks: readonly Uint8Array[], outputs: readonly Uint8Array[]): void
}

/** Checks the shapes every kernel relies on. */
export function assertKernelShapes(coeffs: GfMatrix, inputs: readonly Uint8Array[], outputs: readonly Uint8Array[]): number {
  assert(coeffs.cols === inputs.length && coeffs.rows === outputs.length, 'kernel: matrix shape does not match shard counts')
  const len = inputs[0]?.length ?? outputs[0]?.length ?? 0
  for (const b of inputs) assert(b.length === len, 'kernel: input shards differ in length')
  for (const b of outputs) assert(b.length === len, 'kernel: output shards differ in length')
  return len
}

/** Checks an encodeInto batch; returns the shard size of each chunk. */
export function assertEncodeShapes(parity: GfMatrix, chunks: readonly Uint8Array[], outputs: readonly Uint8Array[]): number[] {
  assert(chunks.length === outputs.length, 'kernel: one output per chunk')
  const k = parity.cols
  const total = k + parity.rows
  return chunks.map((chunk, i) => {
    const size = Math.ceil(chunk.length / k)
    assert((outputs[i] as Uint8Array).length === total * size, 'kernel: output is not k+m shards of ceil(len/k) bytes')
    return size
  })
}

/**
 * Plain TypeScript, one 256-byte table lookup per byte and coefficient. Portable
 * and obviously correct: it is the oracle the WASM kernel is tested against.
 */
export const tsKernel: GfKernel = {
  name: 'ts',
  mulRows(coeffs, inputs, outputs) {
    const len = assertKernelShapes(coeffs, inputs, outputs)
    for (let r = 0; r < outputs.length; r++) {
      const out = outputs[r] as Uint8Array
      out.fill(0)
      for (let j = 0; j < inputs.length; j++) {
        mulAddInto(out, inputs[j] as Uint8Array, coeffs.data[r * coeffs.cols + j] as number, len)
      }
    }
  },
  encodeInto(parity, chunks, outputs) {
    const sizes = assertEncodeShapes(parity, chunks, outputs)
    const k = parity.cols
    chunks.forEach((chunk, c) => {
      const out = outputs[c] as Uint8Array
      const size = sizes[c] as number
      out.set(chunk)
      out.fill(0, chunk.length, k * size)
      const shard = (i: number) => out.subarray(i * size, (i + 1) * size)
      const data = Array.from({ length: k }, (_, j) => shard(j))
      const rows = Array.from({ length: parity.rows }, (_, r) => shard(k + r))
      tsKernel.mulRows(parity, data, rows)
    })
  },
}

/** MUL_ROWS[c] = the 256-byte table x → c·x (a small array per coefficient is faster than an offset into one 64 KiB table). */
const MUL_ROWS: readonly Uint8Array[] = Array.from({ length: 256 }, (_, c) => MUL_TABLE.slice(c << 8, (c + 1) << 8))

/**
 * out ^= c · input. Works a 32-bit word at a time when both buffers are
 * word-aligned (about 2.5× faster in V8 than byte at a time), bytes otherwise.
 */
function mulAddInto(out: Uint8Array, input: Uint8Array, c: number, len: number): void {
  if (c === 0) return
  const t = MUL_ROWS[c] as Uint8Array
  let done = 0
  if (out.byteOffset % 4 === 0 && input.byteOffset % 4 === 0) {
    const words = len >>> 2
    const o32 = new Uint32Array(out.buffer, out.byteOffset, words)
    const i32 = new Uint32Array(input.buffer, input.byteOffset, words)
    if (c === 1) {
      for (let i = 0; i < words; i++) o32[i] = (o32[i] as number) ^ (i32[i] as number)
    } else {
      for (let i = 0; i < words; i++) {
        const x = i32[i] as number
        const y = (t[x & 255] as number) | ((t[(x >>> 8) & 255] as number) << 8) | ((t[(x >>> 16) & 255] as number) << 16) | ((t[x >>> 24] as number) << 24)
        o32[i] = (o32[i] as number) ^ y
      }
    }
    done = words << 2
  }
  for (let i = done; i < len; i++) out[i] = (out[i] as number) ^ (t[input[i] as number] as number)
}
