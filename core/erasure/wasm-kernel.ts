/**
 * The WASM SIMD kernel (core/erasure/assembly/gf256.ts, compiled by
 * scripts/build-wasm.mjs next to this file). The host copies shards into the
 * module's linear memory at a 32-byte-aligned stride, writes the split-nibble
 * tables for the coefficients, runs the kernel, and copies the outputs back.
 * The copies are memcpy-speed and cost far less than the field arithmetic.
 */
import { readFile } from 'node:fs/promises'
import { MUL_TABLE } from './gf256.js'
import { assertKernelShapes, tsKernel, type GfKernel, type KernelName } from './kernel.js'
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
  mulRows(tables: number, rows: number, cols: number, inPtr: number, outPtr: number, stride: number, len: number): void
}

const WASM_PAGE_BYTES = 65536
const ALIGN_BYTES = 64

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
  readonly #base: number

  constructor(exports: Gf256Exports) {
    this.#exports = exports
    this.#base = alignUp(exports.heapBase(), ALIGN_BYTES)
  }

  mulRows(coeffs: GfMatrix, inputs: readonly Uint8Array[], outputs: readonly Uint8Array[]): void {
    const len = assertKernelShapes(coeffs, inputs, outputs)
    if (len === 0 || outputs.length === 0) return
    const stride = alignUp(len, ALIGN_BYTES)
    const tablesPtr = this.#base
    const inPtr = alignUp(tablesPtr + coeffs.rows * coeffs.cols * 32, ALIGN_BYTES)
    const outPtr = inPtr + inputs.length * stride
    this.#ensureMemory(outPtr + outputs.length * stride)
    const heap = new Uint8Array(this.#exports.memory.buffer)
    writeTables(heap, tablesPtr, coeffs)
    inputs.forEach((input, j) => heap.set(input, inPtr + j * stride))
    this.#exports.mulRows(tablesPtr, coeffs.rows, coeffs.cols, inPtr, outPtr, stride, stride)
    outputs.forEach((output, r) => output.set(heap.subarray(outPtr + r * stride, outPtr + r * stride + len)))
  }

  #ensureMemory(endBytes: number): void {
    const memory = this.#exports.memory
    const missing = endBytes - memory.buffer.byteLength
    if (missing > 0) memory.grow(Math.ceil(missing / WASM_PAGE_BYTES))
  }
}

/** 32 bytes per coefficient: c·(0..15) then c·(0x00, 0x10, ..., 0xf0). */
function writeTables(heap: Uint8Array, ptr: number, coeffs: GfMatrix): void {
  for (let i = 0; i < coeffs.data.length; i++) {
    const base = (coeffs.data[i] as number) << 8
    const at = ptr + i * 32
    for (let x = 0; x < 16; x++) {
      heap[at + x] = MUL_TABLE[base + x] as number
      heap[at + 16 + x] = MUL_TABLE[base + (x << 4)] as number
    }
  }
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment
}
