/**
 * The chunk store against six real storage nodes (in-process gRPC servers over
 * temp dirs) with a 4+2 policy. Tests run in order on one cluster: the fault
 * tests at the end stop nodes for good.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { open, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { Registry } from 'prom-client'
import { chunkCid } from '../../core/cid.js'
import { place } from '../../core/placement.js'
import { encodeShard } from '../../core/shard.js'
import { CodecPool } from '../../core/workers/pool.js'
import { ShardClient } from '../../storage-node/shard-client.js'
import { fillSeeded } from '../../core/seeded-random.js'
import { ErasureChunkStore, type BadShardReport } from './chunk-store.js'
import { MerkleManifest } from './manifest.js'
import type { NodeClientPool } from './node-clients.js'
import { countingClientPool, startTestCluster, total, type RequestCounts, type TestCluster } from './test-cluster.js'

const K = 4
const M = 2
const CHUNK_BYTES = 64 * 1024

let cluster: TestCluster
let pool: CodecPool
let store: ErasureChunkStore
let registry: Registry
let counts: RequestCounts
let resetCounts: () => void
let holdGets: () => void
let releaseGets: () => void
let clients: NodeClientPool
const badShards: BadShardReport[] = []

before(async () => {
  cluster = await startTestCluster(K + M)
  pool = new CodecPool({ workers: 1 })
  await pool.start()
  registry = new Registry()
  const counting = countingClientPool({ requestDeadlineMs: 5000 })
  counts = counting.counts
  resetCounts = counting.reset
  holdGets = counting.hold
  releaseGets = counting.release
  clients = counting.pool
  store = new ErasureChunkStore(
    { policy: { dataShards: K, parityShards: M, hash: 'sha2-256', chunkSizeBytes: CHUNK_BYTES }, cacheMaxBytes: 8 * 1024 * 1024 },
    { maps: { current: () => cluster.map }, codec: pool, registry, clients: counting.pool },
  )
  await store.start()
  store.onBadShard((r) => badShards.push(r))
})

after(async () => {
  await store.stop()
  // The store was given the client pool, so the test owns it.
  await clients.stop()
  await pool.stop()
  await cluster.close()
})

let seedCounter = 1
function chunks(count: number, lengths: readonly number[] = [CHUNK_BYTES]): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => fillSeeded(new Uint8Array(lengths[i % lengths.length] as number), seedCounter++))
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get()
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val))
  return v?.value ?? 0
}

async function shardCountOnNodes(): Promise<number> {
  let n = 0
  for (const node of cluster.nodes) if (node.running) n += (await node.node.store.stats()).shardCount
  return n
}

function assertSameBytes(actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  assert.equal(actual.length, expected.length)
  actual.forEach((a, i) => assert.ok(Buffer.from(a).equals(Buffer.from(expected[i] as Uint8Array)), `chunk ${i} bytes`))
}

test('put then get round-trips chunks of any length, with one put and one get request per node', async () => {
  const data = chunks(40, [CHUNK_BYTES, 1000, CHUNK_BYTES - 1, 1, 4097])
  resetCounts()
  const cids = await store.putChunks(data, 'raw')
  cids.forEach((cid, i) => assert.ok(cid.equals(chunkCid(data[i] as Uint8Array)), `CID ${i} names the bytes`))
  assert.equal(counts.putShards.size, K + M)
  assert.equal(total(counts.putShards), K + M, 'one put batch per node')
  assert.equal(await shardCountOnNodes(), 40 * (K + M))
  store.clearCache()
  resetCounts()
  assertSameBytes(await store.getChunks(cids), data)
  for (const v of counts.getShards.values()) assert.equal(v, 1, 'one GetShards per node for the whole call')
  assert.equal(total(counts.hasShards), 0)
  assert.equal(await metric('cairn_engine_chunks_degraded_reads_total'), 0)
})

test('identical chunks get the same CID and the same shards: stored once', async () => {
  const [one] = chunks(1)
  const before = await shardCountOnNodes()
  const first = await store.putChunks([one as Uint8Array, Uint8Array.from(one as Uint8Array)], 'raw')
  assert.ok((first[0] as CID).equals(first[1] as CID))
  assert.equal(await shardCountOnNodes(), before + K + M)
  const again = await store.putChunks([Uint8Array.from(one as Uint8Array)], 'raw')
  assert.ok((again[0] as CID).equals(first[0] as CID))
  assert.equal(await shardCountOnNodes(), before + K + M, 'a re-put stores nothing new')
})

test('a cached chunk is served without asking any node, as the cached array itself (callers only read)', async () => {
  const data = chunks(3)
  const cids = await store.putChunks(data, 'raw')
  store.clearCache()
  const hitsBefore = await metric('cairn_engine_chunk_cache_hits_total')
  await store.getChunks(cids)
  resetCounts()
  const [first] = await store.getChunks(cids)
  assert.equal(total(counts.getShards), 0)
  assert.equal((await metric('cairn_engine_chunk_cache_hits_total')) - hitsBefore, 3)
  const again = await store.getChunks(cids)
  assert.equal(again[0], first, 'no copy per get: a 4 KiB read of a cached chunk must not copy 64 KiB')
  assertSameBytes(again, data)
})

test('concurrent gets of one CID share one fetch', async () => {
  const data = chunks(2)
  const cids = await store.putChunks(data, 'raw')
  store.clearCache()
  resetCounts()
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.getChunks(i % 2 === 0 ? cids : [cids[1] as CID])))
  const dataNodes = new Set(cids.flatMap((c) => place(c.bytes, K + M, cluster.map).slice(0, K).map((m) => m.address)))
  assert.deepEqual(new Set(counts.getShards.keys()), dataNodes)
  assert.equal(total(counts.getShards), dataNodes.size, 'one GetShards per data-shard node, for all eight callers')
  for (const r of results) assertSameBytes(r, r.length === 2 ? data : [data[1] as Uint8Array])
})

test('concurrent gets of different chunks share one request per node', async () => {
  const data = chunks(16)
  const cids = await store.putChunks(data, 'raw')
  store.clearCache()
  resetCounts()
  // Sixteen readers of one chunk each, as an NBD client's queue of small reads arrives.
  const results = await Promise.all(cids.map((cid) => store.getChunks([cid])))
  results.forEach((r, i) => assertSameBytes(r, [data[i] as Uint8Array]))
  for (const [node, calls] of counts.getShards) assert.equal(calls, 1, `node ${node} got one GetShards for all sixteen readers`)
})

test('reads that miss while two fetches are in flight wait and leave together in one fetch', async () => {
  const data = chunks(10)
  const cids = await store.putChunks(data, 'raw')
  store.clearCache()
  resetCounts()
  holdGets()
  // One read per event-loop turn, as a client with a full queue sends a new read whenever one returns.
  const reads: Promise<Uint8Array[]>[] = []
  for (const cid of cids) {
    reads.push(store.getChunks([cid]))
    await new Promise((resolve) => setImmediate(resolve))
  }
  releaseGets()
  const results = await Promise.all(reads)
  results.forEach((r, i) => assertSameBytes(r, [data[i] as Uint8Array]))
  // The first two reads went alone; the other eight waited for them and went as one fetch.
  for (const [node, calls] of counts.getShards) assert.ok(calls <= 3, `node ${node} got ${calls} GetShards for three fetches`)
  assert.ok(total(counts.getShards) <= 2 * K + K + M, `${total(counts.getShards)} GetShards in all`)
})

test('manifest pages stored through the chunk store read back from the nodes as the same map', async () => {
  const manifest = new MerkleManifest({ hash: 'sha2-256' }, { chunks: store })
  const data = chunks(5)
  const cids = await store.putChunks(data, 'raw')
  const changes = new Map<number, CID | null>(cids.map((c, i) => [i * 5000, c]))
  const root = (await manifest.update(null, changes)) as CID
  assert.equal(root.code, 0x71)
  manifest.clearCache()
  store.clearCache()
  const fresh = new MerkleManifest({ hash: 'sha2-256' }, { chunks: store })
  const found = await fresh.lookup(root, [...changes.keys()])
  found.forEach((c, i) => assert.ok(c?.equals(cids[i] as CID)))
})

test('bad input is refused with InvalidArgumentError before anything is stored', async () => {
  await assert.rejects(store.putChunks([new Uint8Array(100)], 'raw'), { name: 'InvalidArgumentError' }, 'all-zero chunk')
  await assert.rejects(store.putChunks([new Uint8Array(0)], 'raw'), { name: 'InvalidArgumentError' })
  await assert.rejects(store.putChunks([fillSeeded(new Uint8Array(CHUNK_BYTES + 1), 5)], 'raw'), { name: 'InvalidArgumentError' })
  await assert.rejects(store.putChunks(chunks(1), 'json' as 'raw'), { name: 'InvalidArgumentError' })
  await assert.rejects(store.getChunks(['bafy' as unknown as CID]), { name: 'InvalidArgumentError' })
  assert.deepEqual(await store.putChunks([], 'raw'), [])
})

test('a byte flipped in a segment file: the read returns correct data through parity and reports the shard', async () => {
  const data = chunks(6)
  const cids = await store.putChunks(data, 'raw')
  const victim = cids[2] as CID
  const holder = place(victim.bytes, K + M, cluster.map)[1]
  const node = cluster.nodes.find((n) => n.id === holder?.id)
  assert.ok(node !== undefined)
  await flipByteOfShard(node.dir, node.address, victim, 1)
  store.clearCache()
  badShards.length = 0
  const corruptBefore = await metric('cairn_engine_bad_shards_total', { reason: 'corrupt' })
  assertSameBytes(await store.getChunks(cids), data)
  assert.equal((await metric('cairn_engine_bad_shards_total', { reason: 'corrupt' })) - corruptBefore, 1)
  assert.equal(badShards.length, 1)
  assert.equal(badShards[0]?.reason, 'corrupt')
  assert.equal(badShards[0]?.index, 1)
  assert.equal(badShards[0]?.memberId, node.id)
  assert.ok(badShards[0]?.cid.equals(victim))
  assert.ok((await metric('cairn_engine_chunks_degraded_reads_total')) >= 1)
})

/** Flips one payload byte of shard `index` of `cid` inside the node's segment file. */
async function flipByteOfShard(dir: string, address: string, cid: CID, index: number): Promise<void> {
  const client = new ShardClient({ address })
  const shard = await client.getShard({ chunkCid: cid.bytes, index })
  client.close()
  const segDir = join(dir, 'segments')
  for (const name of await readdir(segDir)) {
    const path = join(segDir, name)
    const at = (await readFile(path)).indexOf(Buffer.from(shard.bytes))
    if (at < 0) continue
    const fh = await open(path, 'r+')
    const pos = at + shard.bytes.length - 10
    const one = Buffer.alloc(1)
    await fh.read(one, 0, 1, pos)
    one[0] = (one[0] as number) ^ 0x40
    await fh.write(one, 0, 1, pos)
    await fh.close()
    return
  }
  assert.fail('shard not found in any segment file')
}

test('a shard stored wrong under a valid CRC: the read rebuilds around it and reports a mismatch', async () => {
  const [chunk] = chunks(1) as [Uint8Array]
  const cid = chunkCid(chunk)
  const holder = place(cid.bytes, K + M, cluster.map)[2]
  assert.ok(holder !== undefined)
  // The node keeps the first copy of a shard it is given, so this one stays.
  const wrong = encodeShard({ chunkCid: cid.bytes, k: K, m: M, index: 2, chunkLengthBytes: CHUNK_BYTES, payload: fillSeeded(new Uint8Array(CHUNK_BYTES / K), 77) })
  const client = new ShardClient({ address: holder.address })
  await client.putShards([wrong])
  client.close()
  await store.putChunks([chunk], 'raw')
  store.clearCache()
  badShards.length = 0
  assertSameBytes(await store.getChunks([cid]), [chunk])
  assert.equal(badShards.length, 1)
  assert.equal(badShards[0]?.reason, 'mismatch')
  assert.equal(badShards[0]?.index, 2)
  assert.equal(badShards[0]?.memberId, holder.id)
})

test('with m nodes stopped, puts succeed degraded and gets return verified data; with m+1, reads fail typed, never wrong', async () => {
  const written = chunks(12)
  const cids = await store.putChunks(written, 'raw')
  await cluster.stopNode(0)
  await cluster.stopNode(3)
  store.clearCache()
  assertSameBytes(await store.getChunks(cids), written)
  const degradedBefore = await metric('cairn_engine_chunks_degraded_writes_total')
  const more = chunks(8)
  const moreCids = await store.putChunks(more, 'raw')
  assert.equal((await metric('cairn_engine_chunks_degraded_writes_total')) - degradedBefore, 8, 'every chunk has shards on the stopped nodes')
  store.clearCache()
  assertSameBytes(await store.getChunks(moreCids), more)
  assert.ok((await metric('cairn_engine_bad_shards_total', { reason: 'unreachable' })) > 0)

  await cluster.stopNode(5)
  store.clearCache()
  await assert.rejects(store.getChunks([cids[0] as CID]), (err: Error & { kind?: string; cid?: string }) => {
    assert.equal(err.name, 'ChunkUnavailableError')
    assert.equal(err.kind, 'unavailable')
    assert.equal(err.cid, (cids[0] as CID).toString())
    return true
  })
  await assert.rejects(store.putChunks(chunks(2), 'raw'), { name: 'ChunkWriteError' })
})

