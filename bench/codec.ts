/**
 * `cairn bench codec`: the codec's hot paths in GB/s of chunk bytes (input).
 * Every throughput row is the median of REPS timed repetitions, with the spread
 * (min, max) and the same median over this process's CPU time (`cpuGBps`), which
 * a loaded machine disturbs less than wall time. Rows:
 * - per core (one thread): Reed–Solomon encode / batch encode / reconstruct per
 *   kernel, chunk hashing next to raw node:crypto sha256, hash+encode as a worker runs it;
 * - the worker pool's aggregate hash+encode throughput;
 * - event-loop delay (p99, max) while a large batch is hashed and encoded by the
 *   pool, next to the same batch run inline on the main thread.
 * Each row carries the 1-minute load average when it was measured.
 */
import { createHash } from 'node:crypto'
import { availableParallelism, loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'
import type { BenchOptions, BenchResult, BenchSuite } from './report.js'
import { createCodec } from '../core/erasure/codec.js'
import { tsKernel, type GfKernel } from '../core/erasure/kernel.js'
import { encodingMatrix, selectRows } from '../core/erasure/matrix.js'
import { loadWasmKernel } from '../core/erasure/wasm-kernel.js'
import { chunkCid, loadChunkHashers, type ChunkHash } from '../core/cid.js'
import { CodecPool } from '../core/workers/pool.js'
import { createCodecJobRunner, type CodecJobRunner } from '../core/workers/codec-jobs.js'
import { fillSeeded } from '../core/seeded-random.js'

const CHUNK_SIZE_BYTES = 64 * 1024
const RS_CONFIGS: [number, number][] = [[4, 2], [8, 3], [1, 2]]
/** Measuring time per repetition at scale 1; scale shrinks or stretches it. */
const REP_MS = 200
/** Repetitions per row: the value is their median. */
const REPS = 5
/** Chunks per pool job, as the engine's flusher batches them. */
const POOL_BATCH_CHUNKS = 16
/** The "large batch" of the event-loop rows at scale 1: 16 MiB of chunks. */
const LAG_BATCH_CHUNKS = 256

type Settings = Record<string, string | number | boolean>

function randomChunk(length: number, seed: number): Uint8Array {
  return fillSeeded(new Uint8Array(length), seed)
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1e6
}

/** A throughput row: median of `reps` runs of `ms` each, spread, and CPU-time median. */
function throughputRow(name: string, fn: () => void, bytesPerCall: number, ms: number, settings: Settings): BenchResult {
  for (let i = 0; i < 3; i++) fn()
  const wall: number[] = []
  const cpu: number[] = []
  for (let rep = 0; rep < REPS; rep++) {
    let calls = 0
    const cpuStart = process.cpuUsage()
    const start = performance.now()
    let elapsed = 0
    do {
      fn()
      calls++
      elapsed = performance.now() - start
    } while (elapsed < ms)
    wall.push((calls * bytesPerCall) / (elapsed / 1000) / 1e9)
    cpu.push((calls * bytesPerCall) / Math.max(cpuSeconds(cpuStart), 1e-6) / 1e9)
  }
  return { name, value: median(wall), unit: 'GB/s', settings: { ...settings, ...spread(wall), cpuGBps: round3(median(cpu)), load1m: load1m() } }
}

function spread(values: readonly number[]): Settings {
  return { reps: values.length, min: round3(Math.min(...values)), max: round3(Math.max(...values)) }
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000
}

function load1m(): number {
  return Math.round((loadavg()[0] as number) * 100) / 100
}

function* rsRows(kernels: GfKernel[], ms: number): Generator<BenchResult> {
  const chunk = randomChunk(CHUNK_SIZE_BYTES, 42)
  const batch = Array.from({ length: POOL_BATCH_CHUNKS }, (_, i) => randomChunk(CHUNK_SIZE_BYTES, 200 + i))
  for (const [k, m] of RS_CONFIGS) {
    for (const kernel of kernels) {
      const codec = createCodec({ dataShards: k, parityShards: m }, { kernel })
      const settings = { k, m, chunkSizeBytes: CHUNK_SIZE_BYTES, impl: kernel.name, threads: 1 }
      yield throughputRow(`rs.encode.${k}+${m}.64KiB`, () => codec.encode(chunk), chunk.length, ms, settings)
      if (kernel.name === 'wasm-simd') {
        const batchSettings = { ...settings, batchChunks: batch.length }
        yield throughputRow(`rs.encode-batch.${k}+${m}.64KiB`, () => codec.encodeBatch(batch), batch.length * CHUNK_SIZE_BYTES, ms, batchSettings)
        // The same work into one reused output: what encode costs without a fresh
        // result buffer (whose first-touch page faults are the rest of the gap).
        const parity = selectRows(encodingMatrix(k, m), Array.from({ length: m }, (_, i) => k + i))
        const out = [new Uint8Array((k + m) * codec.shardSizeBytes(chunk.length))]
        yield throughputRow(`rs.encode-into-reused.${k}+${m}.64KiB`, () => kernel.encodeInto(parity, [chunk], out), chunk.length, ms, settings)
      }
      // Lose up to two data shards (the costly case: they must be computed from parity).
      const lostDataShards = Math.min(2, k, m)
      const shards: (Uint8Array | undefined)[] = codec.encode(chunk)
      for (let i = 0; i < lostDataShards; i++) shards[i] = undefined
      yield throughputRow(`rs.reconstruct.${k}+${m}.64KiB`, () => codec.reconstruct(shards, chunk.length), chunk.length, ms, { ...settings, lostDataShards })
    }
  }
}

/** chunkCid next to node:crypto's raw sha256 on the same bytes, so "hashing at node:crypto speed" can be checked. */
function* hashRows(ms: number): Generator<BenchResult> {
  const chunk = randomChunk(CHUNK_SIZE_BYTES, 7)
  const base = { chunkSizeBytes: CHUNK_SIZE_BYTES, threads: 1 }
  yield throughputRow('hash.sha2-256.raw.64KiB', () => createHash('sha256').update(chunk).digest(), chunk.length, ms, { ...base, hash: 'sha2-256', impl: 'node:crypto createHash' })
  for (const hash of ['sha2-256', 'blake3'] as ChunkHash[]) {
    const impl = hash === 'sha2-256' ? 'node:crypto' : 'hash-wasm'
    yield throughputRow(`cid.${hash}.64KiB`, () => chunkCid(chunk, hash), chunk.length, ms, { ...base, hash, impl })
  }
}

/** What one worker does per job, on this thread: the per-core figure for the pool's aggregate. */
function jobRow(runner: CodecJobRunner, ms: number): BenchResult {
  const chunks = Array.from({ length: POOL_BATCH_CHUNKS }, (_, i) => randomChunk(CHUNK_SIZE_BYTES, 100 + i))
  const job = { kind: 'encode', dataShards: 4, parityShards: 2, hash: 'sha2-256', chunks } as const
  const settings = { k: 4, m: 2, chunkSizeBytes: CHUNK_SIZE_BYTES, batchChunks: POOL_BATCH_CHUNKS, impl: 'wasm-simd', hash: 'sha2-256', threads: 1 }
  return throughputRow('hash+encode.4+2.64KiB', () => runner.run(job), POOL_BATCH_CHUNKS * CHUNK_SIZE_BYTES, ms, settings)
}

/** Aggregate hash+encode throughput of a pool of `workers`, kept full (two jobs per worker in flight). */
async function poolRow(workers: number, ms: number): Promise<BenchResult> {
  const pool = new CodecPool({ workers })
  await pool.start()
  const batch = Array.from({ length: POOL_BATCH_CHUNKS }, (_, i) => randomChunk(CHUNK_SIZE_BYTES, 100 + i))
  const job = { dataShards: 4, parityShards: 2, hash: 'sha2-256' as const, chunks: batch }
  try {
    await Promise.all(Array.from({ length: workers }, () => pool.encode(job)))
    const runs: number[] = []
    for (let rep = 0; rep < REPS; rep++) {
      let batches = 0
      const start = performance.now()
      const loop = async () => {
        while (performance.now() - start < ms) {
          await pool.encode(job)
          batches++
        }
      }
      await Promise.all(Array.from({ length: 2 * workers }, loop))
      runs.push((batches * POOL_BATCH_CHUNKS * CHUNK_SIZE_BYTES) / ((performance.now() - start) / 1000) / 1e9)
    }
    const settings = { k: 4, m: 2, chunkSizeBytes: CHUNK_SIZE_BYTES, batchChunks: POOL_BATCH_CHUNKS, workers, impl: 'wasm-simd', hash: 'sha2-256' }
    return { name: 'pool.hash+encode.4+2.64KiB', value: median(runs), unit: 'GB/s', settings: { ...settings, ...spread(runs), load1m: load1m() } }
  } finally {
    await pool.stop()
  }
}

interface Lag {
  p99Ms: number
  maxMs: number
}

/**
 * Event-loop delay while `work` runs: a 1 ms timer probe (monitorEventLoopDelay)
 * is enabled first, and left one more tick after, so a loop blocked by the work
 * shows up as one long delay.
 */
async function lagDuring(work: () => Promise<void>): Promise<Lag> {
  const probe = monitorEventLoopDelay({ resolution: 1 })
  probe.enable()
  await delay(5)
  await work()
  await delay(5)
  probe.disable()
  return { p99Ms: probe.percentile(99) / 1e6, maxMs: probe.max / 1e6 }
}

/** The same large batch, hashed and encoded by the pool (in engine-sized jobs, buffers transferred) and inline. */
async function* lagRows(runner: CodecJobRunner, scale: number): AsyncGenerator<BenchResult> {
  const chunkCount = Math.max(POOL_BATCH_CHUNKS, Math.round(LAG_BATCH_CHUNKS * scale))
  const source = Array.from({ length: chunkCount }, (_, i) => randomChunk(CHUNK_SIZE_BYTES, 300 + i))
  const pool = new CodecPool()
  await pool.start()
  const workers = pool.stats().workers
  const pooled: Lag[] = []
  const inline: Lag[] = []
  try {
    for (let rep = 0; rep < REPS; rep++) {
      // Fresh copies outside the probe: transfer detaches them.
      const jobs = Array.from({ length: chunkCount / POOL_BATCH_CHUNKS }, (_, j) => source.slice(j * POOL_BATCH_CHUNKS, (j + 1) * POOL_BATCH_CHUNKS).map((c) => c.slice()))
      pooled.push(await lagDuring(async () => {
        await Promise.all(jobs.map((chunks) => pool.encode({ dataShards: 4, parityShards: 2, hash: 'sha2-256', chunks }, { transfer: true })))
      }))
      inline.push(await lagDuring(async () => {
        runner.run({ kind: 'encode', dataShards: 4, parityShards: 2, hash: 'sha2-256', chunks: source })
        await Promise.resolve()
      }))
    }
  } finally {
    await pool.stop()
  }
  const settings = { k: 4, m: 2, chunkSizeBytes: CHUNK_SIZE_BYTES, batchChunks: chunkCount, workers, hash: 'sha2-256', load1m: load1m() }
  for (const [where, lags] of [['pool', pooled], ['inline', inline]] as const) {
    const s = { ...settings, where, reps: lags.length }
    yield { name: `${where}.event-loop-delay.p99`, value: median(lags.map((l) => l.p99Ms)), unit: 'ms', settings: { ...s, min: round3(Math.min(...lags.map((l) => l.p99Ms))), max: round3(Math.max(...lags.map((l) => l.p99Ms))) } }
    yield { name: `${where}.event-loop-delay.max`, value: median(lags.map((l) => l.maxMs)), unit: 'ms', settings: s }
  }
}

export const codecSuite: BenchSuite = async function* (options: BenchOptions) {
  const ms = Math.max(2, REP_MS * options.scale)
  await loadChunkHashers()
  const kernels = [tsKernel, await loadWasmKernel()]
  yield* rsRows(kernels, ms)
  yield* hashRows(ms)
  const runner = await createCodecJobRunner('wasm-simd')
  yield jobRow(runner, ms)
  const cores = availableParallelism()
  yield await poolRow(Math.max(1, cores - 1), ms)
  if (cores > 1) yield await poolRow(cores, ms)
  yield* lagRows(runner, options.scale)
}
