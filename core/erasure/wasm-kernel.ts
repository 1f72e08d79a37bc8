/**
 * The WASM SIMD kernel (core/erasure/assembly/gf256.ts, compiled by
 * scripts/build-wasm.mjs next to this file). The host copies shards into the
 * module's linear memory (reused across calls) at a 32-byte-aligned stride,
 * writes the split-nibble tables of a coefficient matrix only when the matrix
 * changes, runs the kernel, and copies the outputs back. Encoding writes parity
 * next to the data in linear memory so a chunk's k+m shards leave in one copy.
 */
import { readFile } from 'node:fs/promises'
import { MUL_TABLE } from './gf256.js'
import { assertEncodeShapes, assertKernelShapes, tsKernel, type GfKernel, type KernelName } from './kernel.js'
import type { GfMatrix } from './matrix.js'
import { CairnError } from '../errors.js'

/** The kernel's compiled module could not be loaded (missing build output, no WASM SIMD). */
export class KernelUnavailableError extends CairnError {
  override readonly name = 'KernelUnavailableError'
  readonly kind = 'failed-precondition'
}

// The project's lib (ES2023, no DOM) carries no WebAssembly types; these are the
// few members this module uses.
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
interface WasmModule {
  readonly __brand?: 'WebAssembly.Module'
}
interface WasmApi {
  compile(bytes: Uint8Array): Promise<WasmModule>
  instantiate(module: WasmModule, imports: object): Promise<{ exports: unknown }>
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

interface Gf256Exports {
  memory: WasmMemory
  heapBase(): number
  mulRows(tables: number, rows: number, cols: number, inPtr: number, outPtr: number, stride: number, len: number, count: number, groupStride: number): void
}

const WASM_PAGE_BYTES = 65536
/** Shard stride in linear memory: the kernel works 32 bytes per step with no scalar tail. */
const STRIDE_ALIGN_BYTES = 32
/** Room kept for coefficient tables: a 32×32 matrix at 32 bytes per coefficient. */
const TABLES_RESERVED_BYTES = 32 * 32 * 32
/**
 * Linear memory one call may use for shards: a batch bigger than this is split
 * into groups. It bounds each thread's WASM memory (which never shrinks) while
 * still fitting dozens of 64 KiB chunks per call.
 */
const WORK_BYTES_MAX = 4 * 1024 * 1024

let modulePromise: Promise<WasmModule> | undefined

async function compileModule(): Promise<WasmModule> {
  const url = new URL('./gf256.wasm', import.meta.url)
  try {
    return await wasmApi.compile(await readFile(url))
  } catch (err) {
    modulePromise = undefined
    throw new KernelUnavailableError(`cannot load the WASM SIMD kernel from ${url.pathname}; run npm run build:wasm`, { cause: err })
  }
}

/**
 * A new WASM SIMD kernel instance. Each instance owns its linear memory, so one
 * instance must serve one thread; calls are synchronous and never interleave.
 */
export async function loadWasmKernel(): Promise<GfKernel> {
  modulePromise ??= compileModule()
  const instance = await wasmApi.instantiate(await modulePromise, {})
  return new WasmKernel(instance.exports as unknown as Gf256Exports)
}

/** The kernel with the given name; `ts` needs no loading. */
export async function loadKernel(name: KernelName): Promise<GfKernel> {
  return name === 'ts' ? tsKernel : loadWasmKernel()
}

class WasmKernel implements GfKernel {
  readonly name = 'wasm-simd' as const
  readonly #exports: Gf256Exports
  readonly #tablesPtr: number
  /** The matrix whose tables are in linear memory now: consecutive calls with one matrix write them once. */
  #tablesIn: GfMatrix | undefined
  #heap: Uint8Array

  constructor(exports: Gf256Exports) {
    this.#exports = exports
    this.#tablesPtr = alignUp(exports.heapBase(), 64)
    this.#heap = new Uint8Array(exports.memory.buffer)
  }

  mulRows(coeffs: GfMatrix, inputs: readonly Uint8Array[], outputs: readonly Uint8Array[]): void {
    const len = assertKernelShapes(coeffs, inputs, outputs)
    if (len === 0 || outputs.length === 0) return
    const stride = alignUp(len, STRIDE_ALIGN_BYTES)
    const inPtr = this.#prepare(coeffs, (inputs.length + outputs.length) * stride)
    const outPtr = inPtr + inputs.length * stride
    const heap = this.#heap
    for (let j = 0; j < inputs.length; j++) heap.set(inputs[j] as Uint8Array, inPtr + j * stride)
    this.#exports.mulRows(this.#tablesPtr, coeffs.rows, coeffs.cols, inPtr, outPtr, stride, stride, 1, 0)
    for (let r = 0; r < outputs.length; r++) {
      const at = outPtr + r * stride
      ;(outputs[r] as Uint8Array).set(heap.subarray(at, at + len))
    }
  }

  /**
   * Each chunk is copied into linear memory once, laid out as its k data shards
   * followed by room for m parity shards; one kernel call computes the parity
   * of a whole group of chunks in place; each chunk's k+m shards are copied out
   * once. When the shard size is a multiple of 32 (64 KiB chunks and k a power
   * of two) each copy is a single memcpy.
   */
  encodeInto(parity: GfMatrix, chunks: readonly Uint8Array[], outputs: readonly Uint8Array[]): void {
    const sizes = assertEncodeShapes(parity, chunks, outputs)
    let from = 0
    while (from < chunks.length) {
      const size = sizes[from] as number
      const groupBytes = (parity.cols + parity.rows) * alignUp(size, STRIDE_ALIGN_BYTES)
      // A group is a run of chunks of one shard size that fits the work region (at least one chunk).
      let to = from + 1
      while (to < chunks.length && sizes[to] === size && (to - from + 1) * groupBytes <= WORK_BYTES_MAX) to++
      this.#encodeGroup(parity, chunks.slice(from, to), outputs.slice(from, to), size)
      from = to
    }
  }

  #encodeGroup(parity: GfMatrix, chunks: readonly Uint8Array[], outputs: readonly Uint8Array[], size: number): void {
    const k = parity.cols
    const total = k + parity.rows
    const stride = alignUp(size, STRIDE_ALIGN_BYTES)
    const groupBytes = total * stride
    const base = this.#prepare(parity, chunks.length * groupBytes)
    const heap = this.#heap
    const packed = stride === size
    chunks.forEach((chunk, c) => {
      const at = base + c * groupBytes
      if (packed) {
        heap.set(chunk, at)
        heap.fill(0, at + chunk.length, at + k * size)
      } else {
        for (let j = 0; j < k; j++) {
          const piece = chunk.subarray(Math.min(j * size, chunk.length), Math.min((j + 1) * size, chunk.length))
          heap.set(piece, at + j * stride)
          heap.fill(0, at + j * stride + piece.length, at + j * stride + size)
        }
      }
    })
    if (parity.rows > 0 && size > 0) {
      this.#exports.mulRows(this.#tablesPtr, parity.rows, k, base, base + k * stride, stride, stride, chunks.length, groupBytes)
    }
    outputs.forEach((out, c) => {
      const at = base + c * groupBytes
      if (packed) out.set(heap.subarray(at, at + total * size))
      else for (let i = 0; i < total; i++) out.set(heap.subarray(at + i * stride, at + i * stride + size), i * size)
    })
  }

  /** Writes the tables of `coeffs` unless already there and makes room for `workBytes`; returns the work region. */
  #prepare(coeffs: GfMatrix, workBytes: number): number {
    const tables = tablesOf(coeffs)
    const workPtr = alignUp(this.#tablesPtr + Math.max(TABLES_RESERVED_BYTES, tables.length), 64)
    this.#ensureMemory(workPtr + workBytes)
    if (this.#tablesIn !== coeffs) {
      this.#heap.set(tables, this.#tablesPtr)
      this.#tablesIn = coeffs
    }
    return workPtr
  }

  #ensureMemory(endBytes: number): void {
    const memory = this.#exports.memory
    const missing = endBytes - memory.buffer.byteLength
    if (missing > 0) memory.grow(Math.ceil(missing / WASM_PAGE_BYTES))
    // Growing detaches the old buffer; keep one view and renew it only then.
    if (this.#heap.buffer !== memory.buffer) this.#heap = new Uint8Array(memory.buffer)
  }
}

/**
 * Split-nibble tables per coefficient matrix, built once: the codec keeps its
 * matrices (the parity rows, the cached decode matrices), so they are keys here.
 */
const TABLE_CACHE = new WeakMap<GfMatrix, Uint8Array>()

/** 32 bytes per coefficient: c·(0..15) then c·(0x00, 0x10, ..., 0xf0). */
function tablesOf(coeffs: GfMatrix): Uint8Array {
  let tables = TABLE_CACHE.get(coeffs)
  if (tables !== undefined) return tables
  tables = new Uint8Array(coeffs.data.length * 32)
  for (let i = 0; i < coeffs.data.length; i++) {
    const base = (coeffs.data[i] as number) << 8
    for (let x = 0; x < 16; x++) {
      tables[i * 32 + x] = MUL_TABLE[base + x] as number
      tables[i * 32 + 16 + x] = MUL_TABLE[base + (x << 4)] as number
    }
  }
  TABLE_CACHE.set(coeffs, tables)
  return tables
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment
}
