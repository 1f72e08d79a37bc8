/**
 * `cairn bench repair`: unpaced rebuild of a lost member's shards, next to the
 * raw sequential read speed of the same disk measured in the same run.
 *
 * A 4+2 cluster of seven real segment stores (in this process, on the work
 * directory's disk) holds 64 KiB chunks; one member is deleted for good and
 * dropped from the map; every remaining member then runs one repair pass at
 * once, unpaced, with the core worker pool for decode and encode. Peers are
 * in-process (no network): the number is the repair logic, the store and the
 * codec, not the mesh. The mesh rows measure what the rebuild asks of it:
 * gets of many shards per call (what repair makes) next to one shard per call
 * (what it made before), between two libp2p nodes in this process.
 */
import { execFile } from 'node:child_process'
import { open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { silentLogger } from '../core/logger.js'
import { CodecPool } from '../core/workers/pool.js'
import { encodeShard, type ShardAddress } from '../core/shard.js'
import { createCodecJobRunner } from '../core/workers/codec-jobs.js'
import { startTestMeshCluster, stopTestMeshNodes, type TestMeshNode } from '../storage-node/mesh/test-cluster.js'
import { Repairer, type RepairPassReport } from '../storage-node/repair/repairer.js'
import { createTestCluster, seededChunks, writeChunks } from '../storage-node/repair/test-support.js'
import type { SegmentShardStore } from '../storage-node/segment-store.js'
import type { BenchOptions, BenchResult, BenchSuite } from './report.js'

const run = promisify(execFile)
const CHUNK_BYTES = 64 * 1024
const K = 4
const M = 2
const MEMBERS = 7

export const repairSuite: BenchSuite = async function* (options: BenchOptions): AsyncGenerator<BenchResult> {
  const chunks = Math.max(32, Math.round(384 * options.scale))
  const rebuild = await rebuildLostMember(options.workDir, chunks)
  const disk = await sequentialRead(options.workDir, Math.max(16, Math.round(128 * options.scale)) * 1024 * 1024)
  const settings = { geometry: `${K}+${M}`, members: MEMBERS, chunkBytes: CHUNK_BYTES, chunks, rebuiltShards: rebuild.shards, movedShards: rebuild.moved, machine: 'shared 2 cores, loaded' }
  yield { name: 'repair.rebuild.lost-member', value: rebuild.mbPerSecond, unit: 'MB/s', settings: { ...settings, pace: 'unpaced', peers: 'in-process', measures: 'rebuilt shard bytes / wall time until full redundancy (passes on all members at once, repeated until a round finds nothing; that round is not timed)' } }
  yield { name: 'repair.rebuild.cpu', value: rebuild.cpuSecondsPerGB, unit: 'CPU s/GB', settings: { ...settings, measures: 'this process\'s CPU time (event loop and codec workers) per GB of rebuilt shards' } }
  // On a machine shared with other work, wall time measures the neighbours; CPU time does not.
  yield { name: 'repair.rebuild.per-cpu-second', value: 1000 / rebuild.cpuSecondsPerGB, unit: 'MB/s', settings: { ...settings, measures: 'rebuilt shard bytes per CPU second of this process' } }
  yield { name: 'repair.disk.sequential-read', value: disk, unit: 'MB/s', settings: { tool: 'dd bs=1M iflag=direct', sameDirAs: 'the stores' } }
  yield { name: 'repair.rebuild-vs-disk-read', value: rebuild.mbPerSecond / disk, unit: 'ratio', settings: { ...settings, pairing: 'same run' } }
  const shards = Math.max(32, Math.round(256 * options.scale))
  for (const perCall of [64, 1]) {
    const mesh = await meshGets(shards, perCall)
    const meshSettings = { shardBytes: CHUNK_BYTES / K, shards, shardsPerCall: perCall, callsInFlight: MESH_CALLS_IN_FLIGHT, nodes: '2 libp2p nodes in this process (TCP, Noise, yamux)', machine: 'shared 2 cores, loaded' }
    yield { name: `repair.mesh.get-${perCall}.throughput`, value: mesh.mbPerSecond, unit: 'MB/s', settings: meshSettings }
    yield { name: `repair.mesh.get-${perCall}.cpu`, value: mesh.cpuSecondsPerGB, unit: 'CPU s/GB', settings: { ...meshSettings, measures: 'CPU time of both ends per GB of shards received' } }
  }
}

const MESH_CALLS_IN_FLIGHT = 8

/** Gets `shards` shards of one 4+2 slot from a peer over the mesh, `perCall` per call, twice over (the first call warms the connection). */
async function meshGets(shardCount: number, perCall: number): Promise<{ mbPerSecond: number; cpuSecondsPerGB: number }> {
  const nodes: TestMeshNode[] = await startTestMeshCluster(['a', 'b'])
  try {
    const [a, b] = nodes as [TestMeshNode, TestMeshNode]
    const runner = await createCodecJobRunner('wasm-simd')
    const encoded = runner.run({ kind: 'encode', dataShards: K, parityShards: M, chunks: seededChunks(shardCount, CHUNK_BYTES, 5) })
    const shards = encoded.map((e) => encodeShard({ chunkCid: e.cid, k: K, m: M, index: 0, chunkLengthBytes: CHUNK_BYTES, payload: e.shards[0] as Uint8Array }))
    await b.store.putShards(shards)
    const addresses: ShardAddress[] = shards.map((s) => ({ chunkCid: s.header.chunkCid, index: 0 }))
    await a.mesh.get('b', addresses.slice(0, 1))
    const calls: ShardAddress[][] = []
    for (let round = 0; round < 2; round++) for (let i = 0; i < addresses.length; i += perCall) calls.push(addresses.slice(i, i + perCall))
    const cpuBefore = process.cpuUsage()
    const started = process.hrtime.bigint()
    let bytes = 0
    let next = 0
    const caller = async (): Promise<void> => {
      while (next < calls.length) {
        for (const r of await a.mesh.get('b', calls[next++] as ShardAddress[])) {
          if (!r.ok) throw r.error
          bytes += r.shard.bytes.byteLength
        }
      }
    }
    await Promise.all(Array.from({ length: MESH_CALLS_IN_FLIGHT }, caller))
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const cpu = process.cpuUsage(cpuBefore)
    return { mbPerSecond: bytes / 1e6 / seconds, cpuSecondsPerGB: (cpu.user + cpu.system) / 1e6 / (bytes / 1e9) }
  } finally {
    await stopTestMeshNodes(nodes)
  }
}

async function rebuildLostMember(workDir: string, chunkCount: number): Promise<{ mbPerSecond: number; cpuSecondsPerGB: number; shards: number; moved: number }> {
  const cluster = await createTestCluster(MEMBERS, workDir)
  const pool = new CodecPool({}, { logger: silentLogger() })
  await pool.start()
  try {
    // Written in slices so the encode of all chunks never sits in memory at once.
    for (let from = 0; from < chunkCount; from += 64) await writeChunks(cluster, seededChunks(Math.min(64, chunkCount - from), CHUNK_BYTES, 1 + from), K, M)
    const lost = (await (cluster.stores.get('n3') as SegmentShardStore).listShards({ pageSize: 100_000 })).shards.length
    await cluster.destroyStore('n3')
    cluster.maps.publish(cluster.maps.current().members.filter((m) => m.id !== 'n3'))
    const repairers = [...cluster.stores.keys()].map(
      (member) =>
        new Repairer(
          { bandwidthBytesPerSecond: Infinity, intervalMs: 0, stateDir: join(cluster.dir, `state-${member}`), settleMs: 0 },
          { memberId: member, maps: cluster.maps, store: cluster.stores.get(member) as SegmentShardStore, peers: cluster.peers, liveness: cluster.peers, logger: silentLogger(), registry: cluster.registry(member), pool },
        ),
    )
    const cpuBefore = process.cpuUsage()
    const started = process.hrtime.bigint()
    // Every member runs a pass at once, round after round, until a round finds nothing to do. The cluster is
    // whole again when the last round that did work ends; the quiet round only confirms it and is not timed.
    const reports: RepairPassReport[] = []
    let seconds = 0
    let cpu = process.cpuUsage(cpuBefore)
    for (let round = 0; round < 5; round++) {
      const done = await Promise.all(repairers.map((r) => r.runPass()))
      if (done.every((r) => r.repairedShards + r.movedShards + r.deletedShards === 0)) break
      reports.push(...done)
      seconds = Number(process.hrtime.bigint() - started) / 1e9
      cpu = process.cpuUsage(cpuBefore)
    }
    const bytes = reports.reduce((n, r) => n + r.repairedBytes, 0)
    const shards = reports.reduce((n, r) => n + r.repairedShards, 0)
    if (shards < lost) throw new Error(`bench expected ${lost} rebuilt shards, got ${shards}`)
    return { mbPerSecond: bytes / 1e6 / seconds, cpuSecondsPerGB: (cpu.user + cpu.system) / 1e6 / (bytes / 1e9), shards, moved: reports.reduce((n, r) => n + r.movedShards, 0) }
  } finally {
    await pool.stop()
    await cluster.stop()
  }
}

/** dd with O_DIRECT so the page cache does not stand in for the disk. */
async function sequentialRead(workDir: string, sizeBytes: number): Promise<number> {
  const path = join(workDir, 'seq-read.bin')
  const file = await open(path, 'w')
  try {
    const block = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i)
    for (let written = 0; written < sizeBytes; written += block.length) await file.write(block)
    await file.sync()
  } finally {
    await file.close()
  }
  try {
    const started = process.hrtime.bigint()
    await run('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'])
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    return sizeBytes / 1e6 / seconds
  } finally {
    await rm(path, { force: true })
  }
}
