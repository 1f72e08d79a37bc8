import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import type { CID } from 'multiformats/cid'
import { silentLogger } from '../../core/logger.js'
import { CodecPool } from '../../core/workers/pool.js'
import { createLocalControlPlane, type LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import type { ControlPlane, Volume } from '../../control-plane/types.js'
import { ErasureChunkStore } from '../chunks/chunk-store.js'
import { MerkleManifest } from '../chunks/manifest.js'
import { startTestCluster, type TestCluster, type TestNode } from '../chunks/test-cluster.js'
import { ShardClient } from '../../storage-node/shard-client.js'
import { JournalClient } from '../../storage-node/journal/journal-client.js'
import { hasJournal } from '../../storage-node/journal/testing.js'
import { GarbageCollector } from './collector.js'

const CHUNK_BYTES = 4096

/** Chunk `n` of generation `gen`: distinct, never all zeros. */
function chunk(gen: number, n: number): Uint8Array {
  const out = new Uint8Array(CHUNK_BYTES)
  out.fill((gen * 31 + n) % 251 || 1)
  new DataView(out.buffer).setUint32(0, gen * 1_000_000 + n)
  return out
}

describe('garbage collector against in-process storage nodes', () => {
  let cluster: TestCluster
  let cp: LocalControlPlane
  let codec: CodecPool
  let chunks: ErasureChunkStore
  let manifest: MerkleManifest

  before(async () => {
    cluster = await startTestCluster(3)
    cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
    await cp.start()
    await cp.createBlockStore({ name: 'bs', hostPath: '/d' })
    await cp.createStoragePolicy({ name: 'p', dataShards: 2, parityShards: 1, chunkSizeBytes: CHUNK_BYTES })
    await cp.publishClusterMap('bs', cluster.map)
    codec = new CodecPool({ workers: 1 }, {})
    await codec.start()
    chunks = new ErasureChunkStore(
      { policy: { dataShards: 2, parityShards: 1, hash: 'sha2-256', chunkSizeBytes: CHUNK_BYTES } },
      { maps: { current: () => cluster.map }, codec, registry: new Registry() },
    )
    await chunks.start()
    manifest = new MerkleManifest({ hash: 'sha2-256' }, { chunks })
  })
  after(async () => {
    await chunks?.stop()
    await codec?.stop()
    await cp?.stop()
    await cluster?.close()
  })

  /** Puts `count` chunks of generation `gen` and returns a manifest root over them. */
  async function generation(gen: number, count: number): Promise<{ root: CID; cids: CID[] }> {
    const cids = await chunks.putChunks(Array.from({ length: count }, (_, n) => chunk(gen, n)), 'raw')
    const root = (await manifest.update(null, new Map(cids.map((c, i) => [i, c] as const)))) as CID
    return { root, cids }
  }

  async function setHead(volume: string, root: CID): Promise<void> {
    const v = await cp.getVolume(volume)
    const epoch = v.status.epoch === 0 ? (await cp.acquireEpoch(volume, 'n', 0)).status.epoch : v.status.epoch
    const fresh = await cp.getVolume(volume)
    await cp.updateVolumeHead(volume, { expectedRevision: fresh.revision, epoch }, { rootCid: root.toString(), sizeBytes: 1 << 20, journalSeq: fresh.status.head.journalSeq + 1 })
  }

  async function stored(cid: CID): Promise<number> {
    let n = 0
    for (const node of cluster.nodes) {
      const client = new ShardClient({ address: node.address })
      n += (await client.listShards({ cidPrefix: cid.bytes })).shards.length
      client.close()
    }
    return n
  }

  /** Opens (and so creates) a journal replica of each of `uids` on every node. */
  async function openJournalsEverywhere(uids: readonly string[]): Promise<void> {
    for (const node of cluster.nodes) {
      const client = new JournalClient({ address: node.address })
      try {
        for (const uid of uids) await client.open(uid, 1)
      } finally {
        client.close()
      }
    }
  }

  /** Waits until Date.now() has moved past `ms`, so later puts are stamped strictly after it. */
  async function pastMs(ms: number): Promise<void> {
    while (Date.now() <= ms) await new Promise((resolve) => setImmediate(resolve))
  }

  it('marks a head written while the mark runs (a later root round), so its older chunks survive a zero grace', async () => {
    await cp.createVolume({ name: 'v', blockStore: 'bs', storagePolicy: 'p', sizeBytes: 1 << 20 })
    const a = await generation(1, 8)
    await setHead('v', a.root)
    // Put before the mark starts, named by no head until the mark's first root read is done.
    const b = await generation(2, 8)
    const garbage = await generation(3, 4)
    await pastMs(Date.now())
    let moved = false
    // The head moves right after the first listing of volumes: only a later round can see it.
    const racing = new Proxy(cp, {
      get(target, prop, receiver) {
        if (prop !== 'listSnapshots') return Reflect.get(target, prop, receiver) as unknown
        return async (...args: Parameters<ControlPlane['listSnapshots']>) => {
          if (!moved) {
            moved = true
            await setHead('v', b.root)
          }
          return target.listSnapshots(...args)
        }
      },
    }) as ControlPlane
    const registry = new Registry()
    const gc = new GarbageCollector({}, { controlPlane: racing, logger: silentLogger(), registry })
    await gc.start()
    try {
      const first = await gc.run('bs', { gracePeriodMs: 0 })
      assert.ok(moved, 'the head moved during the mark')
      for (const cid of [...b.cids, b.root]) assert.equal(await stored(cid), 3, `${cid} of the head written during the mark survives`)
      for (const cid of [...a.cids, a.root]) assert.equal(await stored(cid), 3, `${cid} of the head the first round read survives`)
      for (const cid of [...garbage.cids, garbage.root]) assert.equal(await stored(cid), 0, `${cid} is swept`)
      assert.equal(first.sweptShards, (4 + 1) * 3)
      // The next run sees only the new head: the old one's chunks go.
      const second = await gc.run('bs', { gracePeriodMs: 0 })
      assert.equal(second.sweptShards, (8 + 1) * 3)
      for (const cid of [...b.cids, b.root]) assert.equal(await stored(cid), 3)
      for (const cid of [...a.cids, a.root]) assert.equal(await stored(cid), 0)
      const metrics = await registry.getSingleMetricAsString('cairn_gc_runs_total')
      assert.match(metrics, /outcome="succeeded"\} 2/)
    } finally {
      await gc.stop()
    }
  })

  it("collects a deleted volume's journal replicas from every node and keeps those of volumes that exist", async () => {
    const live = await cp.createVolume({ name: 'journaled', blockStore: 'bs', storagePolicy: 'p', sizeBytes: 1 << 20 })
    const deleted = await cp.createVolume({ name: 'doomed', blockStore: 'bs', storagePolicy: 'p', sizeBytes: 1 << 20 })
    await openJournalsEverywhere([live.uid, deleted.uid])
    await cp.deleteVolume('doomed')
    await pastMs(Date.now())
    const registry = new Registry()
    const gc = new GarbageCollector({}, { controlPlane: cp, logger: silentLogger(), registry })
    await gc.start()
    try {
      const dry = await gc.run('bs', { gracePeriodMs: 0, dryRun: true })
      assert.equal(dry.collectedJournals, 3)
      for (const node of cluster.nodes) assert.ok(await hasJournal(node.dir, deleted.uid), 'a dry run deletes no journal')
      // Changed within the grace period: kept.
      assert.equal((await gc.run('bs', { gracePeriodMs: 3_600_000 })).collectedJournals, 0)
      for (const node of cluster.nodes) assert.ok(await hasJournal(node.dir, deleted.uid), 'a journal younger than the grace stays')
      const report = await gc.run('bs', { gracePeriodMs: 0 })
      assert.equal(report.collectedJournals, 3, 'one replica on each node')
      assert.ok(report.journalFreedBytes > 0)
      assert.deepEqual(report.nodes.map((n) => n.journals.collectedJournals), [1, 1, 1])
      for (const node of cluster.nodes) {
        assert.equal(await hasJournal(node.dir, deleted.uid), false, `${node.id} no longer holds the deleted volume's journal`)
        assert.equal(await hasJournal(node.dir, live.uid), true, `${node.id} keeps the live volume's journal`)
      }
      assert.match(await registry.getSingleMetricAsString('cairn_gc_collected_journals_total'), /block_store="bs"\} 3/)
    } finally {
      await gc.stop()
    }
  })

  it('collects the journal replicas a detached volume no longer records, and none of an attached one', async () => {
    const [n0, n1, n2] = cluster.nodes as [TestNode, TestNode, TestNode]
    // Journals on all three nodes; each volume records only the first two as its replicas (the third was replaced).
    const names = ['moved-detached', 'moved-attached', 'moved-pending']
    const volumes = []
    for (const name of names) {
      const v = await cp.createVolume({ name, blockStore: 'bs', storagePolicy: 'p', sizeBytes: 1 << 20 })
      await cp.updateVolumeStatus(name, v.revision, { journalReplicas: [n0.id, n1.id] })
      volumes.push(v)
    }
    await cp.acquireEpoch('moved-attached', 'engine-node', 0)
    const pending = await cp.acquireEpoch('moved-pending', 'dead-node', 0)
    await cp.releaseAttachment('moved-pending', 'dead-node', pending.status.epoch, { headCurrent: false })
    await openJournalsEverywhere(volumes.map((v) => v.uid))
    await pastMs(Date.now())
    const gc = new GarbageCollector({}, { controlPlane: cp, logger: silentLogger() })
    await gc.start()
    try {
      const report = await gc.run('bs', { gracePeriodMs: 0 })
      assert.deepEqual(report.nodes.map((n) => [n.id, n.journals.collectedJournals]), [[n0.id, 0], [n1.id, 0], [n2.id, 1]])
      const [detached, attached, recovering] = volumes as [Volume, Volume, Volume]
      assert.equal(await hasJournal(n2.dir, detached.uid), false, 'the replaced replica of a detached volume goes')
      for (const node of [n0, n1]) assert.ok(await hasJournal(node.dir, detached.uid), `${node.id} keeps the recorded replica`)
      for (const node of cluster.nodes) {
        assert.ok(await hasJournal(node.dir, attached.uid), `${node.id} keeps every replica of an attached volume`)
        assert.ok(await hasJournal(node.dir, recovering.uid), `${node.id} keeps every replica of a volume awaiting recovery`)
      }
    } finally {
      await gc.stop()
    }
  })

  it('a down member is not swept, and a node that fails its sweep fails the run with GcSweepError carrying the others\' counts', async () => {
    const calls: string[] = []
    const gc = new GarbageCollector({}, {
      controlPlane: cp,
      logger: silentLogger(),
      sweepNode: async (member) => {
        calls.push(member.id)
        if (member.id === cluster.nodes[1]!.id) throw new Error('unreachable')
        return { scannedShards: 1, deletedShards: 1, freedBytes: 10, youngShards: 0 }
      },
    })
    await gc.start()
    try {
      const down = { ...cluster.map, epoch: cluster.map.epoch + 1, members: cluster.map.members.map((m, i) => (i === 2 ? { ...m, state: 'down' as const } : m)) }
      await cp.publishClusterMap('bs', down)
      const err = await gc.run('bs', { gracePeriodMs: 3_600_000 }).then(() => undefined, (e: unknown) => e)
      assert.equal((err as Error).name, 'GcSweepError')
      assert.deepEqual(calls.sort(), [cluster.nodes[0]!.id, cluster.nodes[1]!.id].sort())
      assert.equal((err as { report: { sweptShards: number } }).report.sweptShards, 1)
      await assert.rejects(gc.run('bs', { gracePeriodMs: -1 }), { name: 'InvalidArgumentError' })
    } finally {
      await gc.stop()
    }
  })
})
