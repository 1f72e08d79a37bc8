/**
 * `cairn bench shard-store`: the segment store's write throughput with one fsync per
 * batch of 64 × 16 KiB shards, through the store API and through gRPC on loopback,
 * side by side with fio writing the same bytes with the same fsync cadence on the
 * same disk; then random reads from the page cache. With `prefillShards` every store
 * round starts from a copy of one store already holding that many (tiny) shards, so the
 * cost that grows with a node's index shows; a fresh store hides it.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cp, mkdir, open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Registry } from 'prom-client'
import type { BenchOptions, BenchResult, BenchSuite } from './report.js'
import { statCpuSeconds } from './proc-stat.js'
import { encodeShard, type Shard } from '../core/shard.js'
import { silentLogger } from '../core/logger.js'
import { createSegmentShardStore, type SegmentShardStore } from '../storage-node/segment-store.js'
import { StorageNode } from '../storage-node/daemon.js'
import { ShardClient } from '../storage-node/shard-client.js'
import { fillSeeded } from '../core/seeded-random.js'
import { assert, InvalidArgumentError } from '../core/errors.js'
import { fixtureCid, loopbackNodeInit } from '../storage-node/fixtures.js'

const run = promisify(execFile)
const SHARDS_PER_BATCH = 64
const PAYLOAD_BYTES = 16 * 1024
/** Prefill shards are tiny: they exist to fill the index, not the disk. */
const PREFILL_PAYLOAD_BYTES = 64
/** Shards a prefill putShards call carries: large batches keep building a big template quick. */
const PREFILL_SHARDS_PER_PUT = 4096
/**
 * fio's reference job. Segment files are appended to (never preallocated), so fio must
 * append too: `--fallocate=none`. fio's default (`native`) preallocates the whole file
 * first and measures a different workload (unwritten-extent conversion instead of growth).
 */
const FIO_ARGS = ['--name=ref', '--rw=write', '--ioengine=psync', '--fsync=1', '--fallocate=none', '--output-format=json']

export const shardStoreSuite: BenchSuite = async function* (options: BenchOptions) {
  const batches = Math.max(8, Math.round(96 * options.scale))
  // The machine is noisy: each side runs several times, interleaved, and the median of the
  // per-round ratios counts. Nine rounds, not five: single rounds swing 0.3-1.25x with the
  // disk, and five let two slow rounds move the median.
  const rounds = options.scale >= 1 ? 9 : 2
  const prefillShards = options.prefillShards ?? 0
  if (!Number.isSafeInteger(prefillShards) || prefillShards < 0) throw new InvalidArgumentError(`prefillShards must be a non-negative integer, got ${prefillShards}`)
  const template = prefillShards > 0 ? join(options.workDir, 'store-template') : undefined
  try {
    if (template !== undefined) {
      const seconds = await buildPrefillTemplate(template, prefillShards)
      yield { name: 'shard-store.prefill', value: seconds, unit: 's', settings: { prefillShards, shardPayloadBytes: PREFILL_PAYLOAD_BYTES, shardsPerPut: PREFILL_SHARDS_PER_PUT, what: 'untimed setup: building the template every store round copies' } }
    }
    yield* measure(options, batches, rounds, prefillShards, template)
  } finally {
    if (template !== undefined) await rm(template, { recursive: true, force: true })
  }
}

/** The interleaved store and fio rounds, then the gRPC round; store rounds start from `template` when given. */
async function* measure(options: BenchOptions, batches: number, rounds: number, prefillShards: number, template: string | undefined): AsyncGenerator<BenchResult> {
  const writeData = makeBatches(batches, 0)
  // One untimed store round first: a node that serves puts runs compiled code, while the
  // first round of a fresh process would also time module loading and JIT compilation.
  await storeWriteRead(join(options.workDir, 'store'), writeData.slice(0, Math.min(16, batches)), template)
  const batchBytes = writeData[0]!.reduce((sum, s) => sum + s.bytes.length, 0)
  const settings = { shardsPerBatch: SHARDS_PER_BATCH, shardPayloadBytes: PAYLOAD_BYTES, bytesPerFsync: batchBytes, batches, fsync: 'per batch', rounds, storeWarmup: 'one untimed round of 16 batches', prefillShards }
  const fio: number[] = []
  const fioCpu: number[] = []
  const store: number[] = []
  const storeCpu: number[] = []
  const storeMainCpu: number[] = []
  const reads: number[] = []
  const shardsBefore = new Set<number>()
  const shardsAfter = new Set<number>()
  for (let round = 0; round < rounds; round++) {
    // Alternate which side goes first so neither always inherits the other's writeback.
    const fioRun = (): Promise<void> =>
      fioWrite(options.workDir, batchBytes, batches).then((r) => {
        fio.push(r.mbPerSecond)
        fioCpu.push(r.cpuUsPerShard)
      })
    const storeRun = (): Promise<void> =>
      storeWriteRead(join(options.workDir, 'store'), writeData, template).then((r) => {
        shardsBefore.add(r.shardsBefore)
        shardsAfter.add(r.shardsAfter)
        store.push(r.mbPerSecond)
        storeCpu.push(r.cpuUsPerShard)
        if (r.mainThreadCpuUsPerShard !== undefined) storeMainCpu.push(r.mainThreadCpuUsPerShard)
        reads.push(r.readShardsPerSecond)
      })
    if (round % 2 === 0) await fioRun().then(storeRun)
    else await storeRun().then(fioRun)
  }
  // Every round must have started from the same template and written the same shards.
  assert(shardsBefore.size === 1 && shardsBefore.has(prefillShards), `store rounds started with ${[...shardsBefore].join(', ')} shards, not the ${prefillShards} prefilled`)
  assert(shardsAfter.size === 1 && shardsAfter.has(prefillShards + batches * SHARDS_PER_BATCH), `store rounds ended with ${[...shardsAfter].join(', ')} shards`)
  const counts = { shardsBeforeRound: [...shardsBefore][0] as number, shardsAfterRound: [...shardsAfter][0] as number }
  const ratios = store.map((s, i) => s / (fio[i] as number))
  yield summarize('shard-store.write.fio-reference', fio, 'MB/s', { ...settings, tool: `fio ${FIO_ARGS.slice(1, -1).join(' ')} --bs=${batchBytes}` })
  yield summarize('shard-store.write.store', store, 'MB/s', { ...settings, ...counts })
  yield summarize('shard-store.write.store-vs-fio', ratios, 'ratio', { ...settings, target: 0.7, pairing: 'per round' })
  // CPU is what the shared machine's load distorts least: wall-clock ratios swing with other processes.
  yield summarize('shard-store.write.fio-cpu', fioCpu, 'us/shard', { ...settings, what: 'fio usr+sys over its job runtime, per 16 KiB shard written' })
  yield summarize('shard-store.write.store-cpu', storeCpu, 'us/shard', { ...settings, what: 'process user+sys (all threads) over the put loop, per shard' })
  if (storeMainCpu.length > 0) yield summarize('shard-store.write.store-main-thread-cpu', storeMainCpu, 'us/shard', { ...settings, what: 'event-loop thread run time over the put loop, per shard (/proc schedstat)' })
  yield summarize('shard-store.read.store-random', reads, 'shards/s', { shardPayloadBytes: PAYLOAD_BYTES, api: 'getShards', batch: SHARDS_PER_BATCH, target: 50_000, source: 'page cache', rounds, prefillShards })

  const grpc = await grpcWriteRead(join(options.workDir, 'grpc'), makeBatches(batches, 1_000_000), template)
  const fioMedian = median(fio)
  yield { name: 'shard-store.write.grpc', value: grpc.mbPerSecond, unit: 'MB/s', settings: { ...settings, rounds: 1, transport: 'gRPC loopback, in-process server' } }
  yield { name: 'shard-store.write.grpc-vs-fio', value: grpc.mbPerSecond / fioMedian, unit: 'ratio', settings: { ...settings, rounds: 1, versus: 'median fio' } }
  yield { ...grpc.read, settings: { ...grpc.read.settings, prefillShards } }
}

/** The median of `values`, with the lowest and highest in the settings: the spread over rounds. */
function summarize(name: string, values: readonly number[], unit: string, settings: Record<string, string | number | boolean>): BenchResult {
  const sorted = [...values].sort((a, b) => a - b)
  return { name, value: median(values), unit, settings: { ...settings, min: round3(sorted[0] as number), max: round3(sorted[sorted.length - 1] as number) } }
}

/** Bytes a store writes for `data`: encoded shards, headers included, as fio is asked to write. */
function encodedBytes(data: readonly Shard[][]): number {
  return data.reduce((sum, batch) => sum + batch.reduce((n, s) => n + s.bytes.length, 0), 0)
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000
}

function makeBatches(count: number, seedBase: number): Shard[][] {
  const base = fillSeeded(new Uint8Array(PAYLOAD_BYTES), 42)
  return Array.from({ length: count }, (_, b) =>
    Array.from({ length: SHARDS_PER_BATCH }, (_, i) => {
      const n = seedBase + b * SHARDS_PER_BATCH + i
      const payload = Uint8Array.from(base)
      new DataView(payload.buffer).setUint32(0, n) // distinct payloads without paying for a generator per shard
      return encodeShard({ chunkCid: fixtureCid(`bench-${n}`), k: 4, m: 2, index: i % 6, chunkLengthBytes: payload.length * 4, payload })
    }),
  )
}

/**
 * fio appending `batches` writes of exactly one encoded batch each (payloads and shard
 * headers), fsync after each: the store's bytes and fsync cadence, on the same file system.
 */
async function fioWrite(workDir: string, batchBytes: number, batches: number): Promise<{ mbPerSecond: number; cpuUsPerShard: number }> {
  const dir = join(workDir, 'fio')
  await mkdir(dir, { recursive: true })
  try {
    const { stdout } = await run('fio', [...FIO_ARGS, `--bs=${batchBytes}`, `--size=${batchBytes * batches}`, `--directory=${dir}`], { maxBuffer: 16 * 1024 * 1024 })
    const report = JSON.parse(stdout) as { jobs: Array<{ write: { bw_bytes: number }; job_runtime: number; usr_cpu: number; sys_cpu: number }> }
    const job = report.jobs[0]
    if (job === undefined) return { mbPerSecond: NaN, cpuUsPerShard: NaN }
    // usr_cpu and sys_cpu are percentages of the job's runtime (ms).
    const cpuUs = ((job.usr_cpu + job.sys_cpu) / 100) * job.job_runtime * 1000
    return { mbPerSecond: job.write.bw_bytes / 1e6, cpuUsPerShard: cpuUs / (batches * SHARDS_PER_BATCH) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

interface StoreRun {
  /** The store's shard count once started, and after the round's puts and reads. */
  shardsBefore: number
  shardsAfter: number
  mbPerSecond: number
  cpuUsPerShard: number
  mainThreadCpuUsPerShard: number | undefined
  readShardsPerSecond: number
}

/**
 * CPU time of the event-loop thread (µs) from /proc: the scheduler's nanosecond run time
 * (schedstat) where the kernel keeps it, else user + system in 10 ms ticks (stat; 1.6 µs
 * a shard at this bench's size, too coarse to compare two builds); undefined where /proc
 * is missing. process.cpuUsage counts every thread.
 */
function mainThreadCpuUs(): number | undefined {
  const task = `/proc/self/task/${process.pid}`
  try {
    return Number(readFileSync(`${task}/schedstat`, 'utf8').split(' ')[0]) / 1000
  } catch {
    try {
      return statCpuSeconds(readFileSync(`${task}/stat`, 'utf8')) * 1e6
    } catch {
      return undefined
    }
  }
}

/** The options every bench store runs with, the prefill template's included. */
function createBenchStore(dataDir: string): SegmentShardStore {
  return createSegmentShardStore({ dataDir, compactionIntervalMs: 0 }, { logger: silentLogger() })
}

/**
 * Starts a store on a copy of `template` (or an empty directory), ready to time: start()
 * loads the index's address map, so a round times steady-state puts, not a store still
 * reading its index.
 */
async function startRoundStore(dataDir: string, template: string | undefined): Promise<SegmentShardStore> {
  if (template !== undefined) await copyTemplate(template, dataDir)
  const store = createBenchStore(dataDir)
  await store.start()
  return store
}

async function storeWriteRead(dataDir: string, data: Shard[][], template: string | undefined): Promise<StoreRun> {
  const store = await startRoundStore(dataDir, template)
  try {
    const shardsBefore = (await store.stats()).shardCount
    const mainBefore = mainThreadCpuUs()
    const cpuBefore = process.cpuUsage()
    const started = process.hrtime.bigint()
    for (const batch of data) await store.putShards(batch)
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const cpu = process.cpuUsage(cpuBefore)
    const mainAfter = mainThreadCpuUs()
    const all = data.flat()
    const reads = Math.max(20_000, all.length * 4)
    let x = 12345
    const readStart = process.hrtime.bigint()
    for (let done = 0; done < reads; done += SHARDS_PER_BATCH) {
      const addresses = Array.from({ length: SHARDS_PER_BATCH }, () => {
        x = (x * 1103515245 + 12345) >>> 0
        return (all[x % all.length] as Shard).header
      })
      for (const r of await store.getShards(addresses)) if (!r.ok) throw r.error
    }
    const readSeconds = Number(process.hrtime.bigint() - readStart) / 1e9
    return {
      shardsBefore,
      shardsAfter: (await store.stats()).shardCount,
      mbPerSecond: encodedBytes(data) / seconds / 1e6,
      cpuUsPerShard: (cpu.user + cpu.system) / all.length,
      mainThreadCpuUsPerShard: mainBefore === undefined || mainAfter === undefined ? undefined : (mainAfter - mainBefore) / all.length,
      readShardsPerSecond: reads / readSeconds,
    }
  } finally {
    await store.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

async function grpcWriteRead(dataDir: string, data: Shard[][], template: string | undefined): Promise<{ mbPerSecond: number; read: BenchResult }> {
  // The node's shard store lives in dataDir itself, so the template is its starting store.
  if (template !== undefined) await copyTemplate(template, dataDir)
  const node = new StorageNode(
    loopbackNodeInit(dataDir, {
      segmentSizeBytes: 256 * 1024 * 1024,
      maxBatchShards: 1024,
      maxBatchBytes: 32 * 1024 * 1024,
      maxShardBytes: 4 * 1024 * 1024,
      maxInFlightRequests: 256,
      pendingMaxBytes: 256 * 1024 * 1024,
      shutdownGraceMs: 5000,
    }),
    { logger: silentLogger(), registry: new Registry() },
  )
  await node.start()
  const client = new ShardClient({ address: node.grpcAddress() })
  try {
    const stream = client.openPutStream()
    const started = process.hrtime.bigint()
    for (const batch of data) await stream.put(batch)
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    stream.close()
    const all = data.flat()
    const rounds = Math.max(100, Math.round(all.length / SHARDS_PER_BATCH) * 2)
    let x = 777
    const readStart = process.hrtime.bigint()
    for (let r = 0; r < rounds; r += 4) {
      await Promise.all(
        Array.from({ length: 4 }, () => {
          const addresses = Array.from({ length: SHARDS_PER_BATCH }, () => {
            x = (x * 1103515245 + 12345) >>> 0
            return (all[x % all.length] as Shard).header
          })
          return client.getShards(addresses)
        }),
      )
    }
    const readSeconds = Number(process.hrtime.bigint() - readStart) / 1e9
    const shardsRead = Math.ceil(rounds / 4) * 4 * SHARDS_PER_BATCH
    return {
      mbPerSecond: encodedBytes(data) / seconds / 1e6,
      read: { name: 'shard-store.read.grpc-getshards', value: shardsRead / readSeconds, unit: 'shards/s', settings: { batch: SHARDS_PER_BATCH, callsInFlight: 4, shardPayloadBytes: PAYLOAD_BYTES } },
    }
  } finally {
    client.close()
    await node.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

/**
 * Builds a stopped store holding `shardCount` tiny shards at `dir` (untimed setup) and
 * returns the seconds it took. Rounds copy it rather than each filling their own: the
 * fill costs far more than the copy, and every round starts from the same index.
 */
async function buildPrefillTemplate(dir: string, shardCount: number): Promise<number> {
  await rm(dir, { recursive: true, force: true })
  const started = process.hrtime.bigint()
  const store = createBenchStore(dir)
  await store.start()
  try {
    for (let first = 0; first < shardCount; first += PREFILL_SHARDS_PER_PUT) {
      await store.putShards(makePrefillShards(first, Math.min(PREFILL_SHARDS_PER_PUT, shardCount - first)))
    }
    const stored = (await store.stats()).shardCount
    assert(stored === shardCount, `the prefill template holds ${stored} shards, not ${shardCount}`)
  } finally {
    await store.stop()
  }
  return Number(process.hrtime.bigint() - started) / 1e9
}

/** Prefill shards `first` to `first + count - 1`: seeded payloads, and CIDs no timed batch uses. */
function makePrefillShards(first: number, count: number): Shard[] {
  return Array.from({ length: count }, (_, i) => {
    const n = first + i
    const payload = fillSeeded(new Uint8Array(PREFILL_PAYLOAD_BYTES), n + 1)
    return encodeShard({ chunkCid: fixtureCid(`prefill-${n}`), k: 4, m: 2, index: n % 6, chunkLengthBytes: payload.length * 4, payload })
  })
}

/**
 * Copies the template store to `dataDir` and fsyncs every copied file, so the copy's
 * writeback is done before a round starts instead of landing on the round's fsyncs.
 */
async function copyTemplate(template: string, dataDir: string): Promise<void> {
  await rm(dataDir, { recursive: true, force: true })
  await cp(template, dataDir, { recursive: true })
  const entries = await readdir(dataDir, { recursive: true, withFileTypes: true })
  const paths = [dataDir, ...entries.map((e) => join(e.parentPath, e.name))]
  for (const path of paths) {
    const file = await open(path, 'r')
    try {
      await file.sync()
    } finally {
      await file.close()
    }
  }
}
