/**
 * `cairn bench codec`: the codec's hot paths in GB/s of chunk bytes (input):
 * Reed–Solomon encode and reconstruct per kernel, chunk hashing, the worker pool's
 * hash+encode throughput, and the event-loop delay while the pool works.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { BenchOptions, BenchResult, BenchSuite } from './report.js'
import { createCodec } from '../core/erasure/codec.js'
import { tsKernel, type GfKernel } from '../core/erasure/kernel.js'
import { loadWasmKernel } from '../core/erasure/wasm-kernel.js'
import { chunkCid, loadChunkHashers, type ChunkHash } from '../core/cid.js'
import { CodecPool } from '../core/workers/pool.js'
import { createCodecJobRunner } from '../core/workers/codec-jobs.js'

const CHUNK_SIZE_BYTES = 64 * 1024
const RS_CONFIGS: [number, number][] = [[4, 2], [8, 3], [1, 2]]
/** Measuring time per row at scale 1; scale shrinks or stretches it. */
const ROW_MS = 400
const POOL_BATCH_CHUNKS = 16

function randomChunk(length: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1
  return Uint8Array.from({ length }, () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x & 0xff
  })
}

/** Runs `fn` repeatedly for about `ms` after a short warm-up; returns GB/s of `bytesPerCall`. */
function throughputGBps(fn: () => void, bytesPerCall: number, ms: number): number {
  for (let i = 0; i < 3; i++) fn()
  let calls = 0
  const start = performance.now()
  let elapsed = 0
  do {
    fn()
    calls++
    elapsed = performance.now() - start
  } while (elapsed < ms)
  return (calls * bytesPerCall) / (elapsed / 1000) / 1e9
}

function* rsRows(kernels: GfKernel[], ms: number): Generator<BenchResult> {
  const chunk = randomChunk(CHUNK_SIZE_BYTES, 42)
  for (const [k, m] of RS_CONFIGS) {
    for (const kernel of kernels) {
      const codec = createCodec({ dataShards: k, parityShards: m }, { kernel })
      const settings = { k, m, chunkSizeBytes: CHUNK_SIZE_BYTES, impl: kernel.name }
      yield { name: `rs.encode.${k}+${m}.64KiB`, value: throughputGBps(() => codec.encode(chunk), chunk.length, ms), unit: 'GB/s', settings }
      // Lose up to two data shards (the costly case: they must be computed from parity).
      const lostDataShards = Math.min(2, k, m)
      const shards: (Uint8Array | undefined)[] = codec.encode(chunk)
      for (let i = 0; i < lostDataShards; i++) shards[i] = undefined
      const value = throughputGBps(() => codec.reconstruct(shards, chunk.length), chunk.length, ms)
      yield { name: `rs.reconstruct.${k}+${m}.64KiB`, value, unit: 'GB/s', settings: { ...settings, lostDataShards } }
    }
  }
}

function* hashRows(ms: number): Generator<BenchResult> {
  const chunk = randomChunk(CHUNK_SIZE_BYTES, 7)
  for (const hash of ['sha2-256', 'blake3'] as ChunkHash[]) {
    const value = throughputGBps(() => chunkCid(chunk, hash), chunk.length, ms)
    yield { name: `cid.${hash}.64KiB`, value, unit: 'GB/s', settings: { hash, chunkSizeBytes: CHUNK_SIZE_BYTES, impl: hash === 'sha2-256' ? 'node:crypto' : 'hash-wasm' } }
  }
}

/** Hash+encode batches through the pool, keeping it full, while sampling event-loop delay. */
async function* poolRows(ms: number): AsyncGenerator<BenchResult> {
  const pool = new CodecPool()
  await pool.start()
  const batch = Array.from({ length: POOL_BATCH_CHUNKS }, (_, i) => randomChunk(CHUNK_SIZE_BYTES, 100 + i))
  const job = { dataShards: 4, parityShards: 2, hash: 'sha2-256' as const, chunks: batch }
  const workers = pool.stats().workers
  const lag = monitorEventLoopDelay({ resolution: 1 })
  try {
    await pool.encode(job)
    let batches = 0
    const start = performance.now()
    lag.enable()
    const loop = async () => {
      while (performance.now() - start < ms) {
        await pool.encode(job)
        batches++
      }
    }
    await Promise.all(Array.from({ length: 2 * workers }, loop))
    lag.disable()
    const seconds = (performance.now() - start) / 1000
    const settings = { k: 4, m: 2, chunkSizeBytes: CHUNK_SIZE_BYTES, batchChunks: POOL_BATCH_CHUNKS, workers, impl: 'wasm-simd', hash: 'sha2-256' }
    yield { name: 'pool.hash+encode.4+2.64KiB', value: (batches * POOL_BATCH_CHUNKS * CHUNK_SIZE_BYTES) / seconds / 1e9, unit: 'GB/s', settings }
    yield { name: 'pool.event-loop-delay.p99', value: lag.percentile(99) / 1e6, unit: 'ms', settings }
    yield { name: 'pool.event-loop-delay.max', value: lag.max / 1e6, unit: 'ms', settings }
  } finally {
    await pool.stop()
  }
}

/** For contrast: how long the event loop is blocked when the same batch runs on it. */
async function inlineBatchRow(): Promise<BenchResult> {
  const runner = await createCodecJobRunner('wasm-simd')
  const chunks = Array.from({ length: POOL_BATCH_CHUNKS }, (_, i) => randomChunk(CHUNK_SIZE_BYTES, 100 + i))
  const start = performance.now()
  runner.run({ kind: 'encode', dataShards: 4, parityShards: 2, hash: 'sha2-256', chunks })
  const settings = { k: 4, m: 2, chunkSizeBytes: CHUNK_SIZE_BYTES, batchChunks: POOL_BATCH_CHUNKS, impl: 'wasm-simd', hash: 'sha2-256' }
  return { name: 'inline.hash+encode.batch-blocks-loop', value: performance.now() - start, unit: 'ms', settings }
}

export const codecSuite: BenchSuite = async function* (options: BenchOptions) {
  const ms = Math.max(2, ROW_MS * options.scale)
  await loadChunkHashers()
  const kernels = [tsKernel, await loadWasmKernel()]
  yield* rsRows(kernels, ms)
  yield* hashRows(ms)
  yield* poolRows(Math.max(20, ms * 2))
  yield await inlineBatchRow()
}
