/**
 * `cairn bench shard-store`: the segment store's write throughput with one fsync per
 * batch of 64 × 16 KiB shards, through the store API and through gRPC on loopback,
 * side by side with fio writing the same bytes with the same fsync cadence on the
 * same disk; then random reads from the page cache.
 */
import { execFile } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Registry } from 'prom-client'
import type { BenchOptions, BenchResult, BenchSuite } from './report.js'
import { encodeShard, type Shard } from '../core/shard.js'
import { silentLogger } from '../core/logger.js'
import { createSegmentShardStore } from '../storage-node/segment-store.js'
import { StorageNode } from '../storage-node/daemon.js'
import { ShardClient } from '../storage-node/shard-client.js'
import { fillSeeded, fixtureCid } from '../storage-node/fixtures.js'

const run = promisify(execFile)
const SHARDS_PER_BATCH = 64
const PAYLOAD_BYTES = 16 * 1024
const BATCH_BYTES = SHARDS_PER_BATCH * PAYLOAD_BYTES

export const shardStoreSuite: BenchSuite = async function* (options: BenchOptions) {
  const batches = Math.max(8, Math.round(96 * options.scale))
  const totalBytes = batches * BATCH_BYTES
  const settings = { shardsPerBatch: SHARDS_PER_BATCH, shardPayloadBytes: PAYLOAD_BYTES, batches, fsync: 'per batch' }
  const fio = await fioWrite(options.workDir, totalBytes)
  yield { name: 'shard-store.write.fio-reference', value: fio, unit: 'MB/s', settings: { ...settings, tool: 'fio psync bs=1M fsync=1' } }

  const data = makeBatches(batches, 0)
  const store = await storeWrite(join(options.workDir, 'store'), data)
  yield { name: 'shard-store.write.store', value: store.mbPerSecond, unit: 'MB/s', settings }
  yield { name: 'shard-store.write.store-vs-fio', value: store.mbPerSecond / fio, unit: 'ratio', settings: { ...settings, target: 0.7 } }
  yield { name: 'shard-store.read.store-random', value: store.readShardsPerSecond, unit: 'shards/s', settings: { shardPayloadBytes: PAYLOAD_BYTES, api: 'getShards', batch: SHARDS_PER_BATCH, target: 50_000, source: 'page cache' } }

  const grpc = await grpcWriteRead(join(options.workDir, 'grpc'), makeBatches(batches, 1_000_000))
  yield { name: 'shard-store.write.grpc', value: grpc.mbPerSecond, unit: 'MB/s', settings: { ...settings, transport: 'gRPC loopback, in-process server' } }
  yield { name: 'shard-store.write.grpc-vs-fio', value: grpc.mbPerSecond / fio, unit: 'ratio', settings }
  yield* [grpc.read] as BenchResult[]
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

/** fio writing `totalBytes` sequentially, 1 MiB per write, fsync after each: the same cadence as one batch per fsync. */
async function fioWrite(workDir: string, totalBytes: number): Promise<number> {
  const dir = join(workDir, 'fio')
  await mkdir(dir, { recursive: true })
  const { stdout } = await run('fio', ['--name=ref', '--rw=write', `--bs=${BATCH_BYTES}`, `--size=${totalBytes}`, '--fsync=1', '--ioengine=psync', `--directory=${dir}`, '--output-format=json'], {
    maxBuffer: 16 * 1024 * 1024,
  })
  await rm(dir, { recursive: true, force: true })
  const report = JSON.parse(stdout) as { jobs: Array<{ write: { bw_bytes: number } }> }
  return (report.jobs[0]?.write.bw_bytes ?? NaN) / 1e6
}

async function storeWrite(dataDir: string, data: Shard[][]): Promise<{ mbPerSecond: number; readShardsPerSecond: number }> {
  const store = createSegmentShardStore({ dataDir, compactionIntervalMs: 0 }, { logger: silentLogger() })
  await store.start()
  try {
    const started = process.hrtime.bigint()
    for (const batch of data) await store.putShards(batch)
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
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
    return { mbPerSecond: (data.length * BATCH_BYTES) / seconds / 1e6, readShardsPerSecond: reads / readSeconds }
  } finally {
    await store.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

async function grpcWriteRead(dataDir: string, data: Shard[][]): Promise<{ mbPerSecond: number; read: BenchResult }> {
  const node = new StorageNode(
    {
      dataDir,
      listen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      segmentSizeBytes: 256 * 1024 * 1024,
      compactionLiveRatio: 0.5,
      compactionIntervalMs: 0,
      maxBatchShards: 1024,
      maxBatchBytes: 32 * 1024 * 1024,
      maxShardBytes: 4 * 1024 * 1024,
      maxInFlightRequests: 256,
      pendingMaxBytes: 256 * 1024 * 1024,
      shutdownGraceMs: 5000,
    },
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
      mbPerSecond: (data.length * BATCH_BYTES) / seconds / 1e6,
      read: { name: 'shard-store.read.grpc-getshards', value: shardsRead / readSeconds, unit: 'shards/s', settings: { batch: SHARDS_PER_BATCH, callsInFlight: 4, shardPayloadBytes: PAYLOAD_BYTES } },
    }
  } finally {
    client.close()
    await node.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
