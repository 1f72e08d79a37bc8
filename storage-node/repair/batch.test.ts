import { test } from 'node:test'
import assert from 'node:assert/strict'
import { place } from '../../core/placement.js'
import { encodeShard, type ShardAddress } from '../../core/shard.js'
import type { PeerShards } from '../mesh/types.js'
import type { SegmentShardStore } from '../segment-store.js'
import type { ShardStore } from '../shard-store.js'
import { checkPlacement, createTestCluster, repairerFor, seededChunks, writeChunks, type TestCluster, type WrittenChunk } from './test-support.js'

/** The member's store, counting the addresses read through getShard and getShards. */
function countingReads(store: SegmentShardStore): { store: ShardStore; reads: () => number } {
  let reads = 0
  const counted = new Proxy(store, {
    get(target, key) {
      if (key === 'getShard') return (a: ShardAddress) => ((reads += 1), target.getShard(a))
      if (key === 'getShards') return (a: readonly ShardAddress[]) => ((reads += a.length), target.getShards(a))
      const value: unknown = Reflect.get(target, key)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
  return { store: counted, reads: () => reads }
}

test('a quiet pass reads a shard only on slot-0 holders: every other holder learns from one has that nothing is its job', async () => {
  const cluster = await createTestCluster(4)
  try {
    const written = await writeChunks(cluster, seededChunks(40, 4096, 31), 2, 1)
    for (const member of ['n0', 'n1', 'n2', 'n3']) {
      const slot0 = written.filter((c) => place(c.cid, 3, cluster.maps.current())[0]?.id === member).length
      const held = written.filter((c) => place(c.cid, 3, cluster.maps.current()).some((m) => m.id === member)).length
      const { store, reads } = countingReads(cluster.stores.get(member) as SegmentShardStore)
      const report = await repairerFor(cluster, member, {}, { store }).runPass()
      assert.equal(report.chunksExamined, held)
      assert.equal(report.repairedShards + report.movedShards + report.deletedShards, 0)
      // One header read per chunk whose slot 0 this member holds; none for the others.
      assert.equal(reads(), slot0, `${member}: ${reads()} reads for ${slot0} slot-0 chunks of ${held}`)
      assert.ok(held > slot0, 'the member holds chunks at other slots too')
    }
  } finally {
    await cluster.stop()
  }
})

/** 4 members, 2+1: n3 is lost for good; one pass on each survivor, in turn, with these peers. */
async function loseN3(cluster: TestCluster, peersFor: (forged: Set<string>) => PeerShards): Promise<{ written: WrittenChunk[]; forged: Set<string>; verifyFailed: number; rebuilt: number }> {
  const written = await writeChunks(cluster, seededChunks(60, 4096, 37), 2, 1)
  const before = cluster.maps.current()
  const lostHere = written.filter((c) => place(c.cid, 3, before).some((m) => m.id === 'n3'))
  const forged = new Set(lostHere.slice(0, 3).map((c) => Buffer.from(c.cid).toString('hex')))
  await cluster.destroyStore('n3')
  cluster.maps.publish(before.members.filter((m) => m.id !== 'n3'))
  let verifyFailed = 0
  let rebuilt = 0
  for (const member of ['n0', 'n1', 'n2']) {
    const report = await repairerFor(cluster, member, { batchChunks: 64, codecBatchChunks: 64 }, { peers: peersFor(forged) }).runPass()
    verifyFailed += report.failures['verify-failed'] ?? 0
    rebuilt += report.repairedShards
  }
  return { written, forged, verifyFailed, rebuilt }
}

test('a chunk whose fetched source does not match its CID fails alone: the other chunks of its codec job are rebuilt, nothing wrong is written', async () => {
  const cluster = await createTestCluster(4)
  try {
    // The same loss with honest peers: what the first round rebuilds when nothing lies.
    const honest = await createTestCluster(4)
    const expected = await loseN3(honest, () => honest.peers).finally(() => honest.stop())
    // Sources of the forged chunks arrive well-formed (CRC-valid) but with the wrong payload.
    const lying = (forged: Set<string>): PeerShards => ({
      has: (m, a, o) => cluster.peers.has(m, a, o),
      put: (m, s, o) => cluster.peers.put(m, s, o),
      get: async (m, a, o) => {
        const results = await cluster.peers.get(m, a, o)
        return results.map((r) => {
          if (!r.ok || !forged.has(Buffer.from(r.shard.header.chunkCid).toString('hex'))) return r
          const payload = Uint8Array.from(r.shard.payload, (b) => b ^ 0x5a)
          return { ok: true, shard: encodeShard({ ...r.shard.header, payload }) }
        })
      },
    })
    const { written, forged, verifyFailed, rebuilt } = await loseN3(cluster, lying)
    assert.equal(expected.verifyFailed, 0)
    // Every shard the honest run rebuilt is either rebuilt here too or refused for its own chunk.
    assert.equal(rebuilt + verifyFailed, expected.rebuilt)
    // Each forged chunk lost one shard: at most one refusal each, never a whole job's worth.
    assert.ok(verifyFailed >= 1 && verifyFailed <= forged.size, `verify-failed ${verifyFailed} for ${forged.size} forged chunks`)
    assert.ok(rebuilt > 0, 'the honest chunks were rebuilt')
    // Honest passes finish the job; a wrong shard written above would have been taken for
    // healthy by `has` and never replaced, so it would show here as different bytes.
    for (let round = 0; round < 4; round++) {
      let work = 0
      for (const member of ['n0', 'n1', 'n2']) {
        const report = await repairerFor(cluster, member).runPass()
        work += report.repairedShards + report.movedShards + report.deletedShards
      }
      if (work === 0) break
    }
    const check = await checkPlacement(cluster, written)
    assert.deepEqual(check.bad, [])
    assert.deepEqual(check.misplaced, [])
    assert.equal(check.healthy, written.length * 3)
  } finally {
    await cluster.stop()
  }
})

test('batchBytesMax ends a batch early: bounded by bytes, each chunk here is its own batch (one has call each)', async () => {
  const cluster = await createTestCluster(4)
  try {
    const written = await writeChunks(cluster, seededChunks(24, 4096, 41), 2, 1)
    const slots = written.map((c) => place(c.cid, 3, cluster.maps.current()).findIndex((m) => m.id === 'n1')).filter((slot) => slot >= 0)
    // A chunk at another slot asks its slot-0 holder; one at slot 0 asks both other targets.
    const perChunkCalls = slots.reduce((n, slot) => n + (slot === 0 ? 2 : 1), 0)
    for (const [init, expected] of [
      [{ batchBytesMax: 1 }, perChunkCalls],
      [{}, undefined],
    ] as const) {
      let hasCalls = 0
      cluster.peers.beforeCall = (kind) => {
        if (kind === 'has') hasCalls += 1
      }
      await repairerFor(cluster, 'n1', init).runPass()
      cluster.peers.beforeCall = undefined
      if (expected !== undefined) assert.equal(hasCalls, expected)
      else assert.ok(hasCalls <= 6, `one batch asks each of the 3 other members at most twice (screen, then targets), got ${hasCalls}`)
    }
  } finally {
    await cluster.stop()
  }
})
