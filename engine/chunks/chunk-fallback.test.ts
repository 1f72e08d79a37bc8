/**
 * Reads after a membership change: shards stay where an older epoch put them
 * until the rebalancer moves them, so readers look at older epochs' placements
 * and, failing that, ask every member.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { CID } from 'multiformats/cid'
import { Registry } from 'prom-client'
import type { ClusterMap } from '../../core/cluster-map.js'
import { chunkCid } from '../../core/cid.js'
import { place } from '../../core/placement.js'
import { CodecPool } from '../../core/workers/pool.js'
import { fillSeeded } from '../../core/seeded-random.js'
import { ErasureChunkStore, type ClusterMapProvider } from './chunk-store.js'
import type { NodeClientPool } from './node-clients.js'
import { countingClientPool, startTestCluster, total, type RequestCounts, type TestCluster } from './test-cluster.js'

const K = 4
const M = 2
let cluster: TestCluster
let pool: CodecPool
let clients: NodeClientPool
let counts: RequestCounts
let resetCounts: () => void

before(async () => {
  cluster = await startTestCluster(K + M)
  pool = new CodecPool({ workers: 1 })
  await pool.start()
  const counting = countingClientPool({ requestDeadlineMs: 5000 })
  clients = counting.pool
  counts = counting.counts
  resetCounts = counting.reset
})

after(async () => {
  await clients.stop()
  await pool.stop()
  await cluster.close()
})

/** The same nodes under new ids: every chunk's placement changes, the data does not move. */
function renamed(map: ClusterMap): ClusterMap {
  return { epoch: map.epoch + 1, members: map.members.map((m) => ({ ...m, id: `renamed-${m.id}` })) }
}

async function storeWith(maps: ClusterMapProvider): Promise<ErasureChunkStore> {
  const store = new ErasureChunkStore({ policy: { dataShards: K, parityShards: M, hash: 'sha2-256', chunkSizeBytes: 4096 } }, { maps, codec: pool, registry: new Registry(), clients })
  await store.start()
  return store
}

test('after a membership change, shards are found at the older epoch placement, then by asking every member', async () => {
  const oldMap = cluster.map
  const newMap = renamed(oldMap)
  const writer = await storeWith({ current: () => oldMap })
  const data = Array.from({ length: 10 }, (_, i) => fillSeeded(new Uint8Array(4096), 500 + i))
  const cids = await writer.putChunks(data, 'raw')
  await writer.stop()
  const moved = cids.filter((c) => {
    const before = place(c.bytes, K + M, oldMap).map((m) => m.address)
    const now = place(c.bytes, K + M, newMap).map((m) => m.address)
    return before.filter((a, i) => a !== now[i]).length > M
  })
  assert.ok(moved.length > 0, 'some chunk lost more than m shards from its new placement')

  const withHistory = await storeWith({ current: () => newMap, history: () => [oldMap] })
  resetCounts()
  assertSame(await withHistory.getChunks(cids), data)
  assert.equal(total(counts.hasShards), 0, 'the older epoch was enough')
  await withHistory.stop()

  const noHistory = await storeWith({ current: () => newMap })
  resetCounts()
  assertSame(await noHistory.getChunks(cids), data)
  assert.equal(counts.hasShards.size, K + M, 'every member was asked')
  await noHistory.stop()
})

test('a chunk no member holds ends in ChunkUnavailableError of kind data-loss', async () => {
  const store = await storeWith({ current: () => cluster.map })
  const cid = chunkCid(fillSeeded(new Uint8Array(100), 9))
  await assert.rejects(store.getChunks([cid as CID]), (err: Error & { kind?: string }) => {
    assert.equal(err.name, 'ChunkUnavailableError')
    assert.equal(err.kind, 'data-loss')
    return true
  })
  await store.stop()
})

function assertSame(actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  assert.equal(actual.length, expected.length)
  actual.forEach((a, i) => assert.ok(Buffer.from(a).equals(Buffer.from(expected[i] as Uint8Array)), `chunk ${i}`))
}
