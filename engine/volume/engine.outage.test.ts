/**
 * m+1 storage nodes down (here 2 of 3 under a 2+1 policy, journalReplicas = m+1 = 2):
 * fewer journal replicas are reachable than the volume needs, so the journal cannot
 * make a write durable anywhere near enough. Writes and FLUSH must then fail with an
 * error the NBD server answers with EIO, within the journal's replacement bound,
 * instead of being acknowledged without durability or hanging.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { CodecPool } from '../../core/workers/pool.js'
import { createLocalControlPlane, type LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import { ErasureChunkStore, MerkleManifest } from '../chunks/index.js'
import { startTestCluster, type TestCluster } from '../chunks/test-cluster.js'
import { ReplicatedJournal } from '../journal/index.js'
import { toNbdErrno } from '../nbd/errors.js'
import { NBD_CMD_FLUSH, NBD_CMD_WRITE, NBD_EIO } from '../nbd/protocol.js'
import { attachVolume, type JournalFactory } from './attach.js'
import type { VolumeEngine } from './engine.js'
import { prng } from './testing/random.js'

const CHUNK = 65536
let cluster: TestCluster
let cp: LocalControlPlane
let pool: CodecPool
let chunkStore: ErasureChunkStore
let engine: VolumeEngine | undefined

const journalFactory: JournalFactory = (init) => {
  const byId = new Map(cluster.map.members.map((m) => [m.id, m]))
  const replicas = init.replicas.map((id) => byId.get(id)).filter((m) => m !== undefined)
  return new ReplicatedJournal(
    { volumeUid: init.volumeUid, epoch: init.epoch, replicas, replaceTimeoutMs: 5000, ackTimeoutMs: 2000 },
    {
      // Every member of the map is a candidate, stopped or not: the journal must find out by itself.
      pickReplacement: (excluded) => cluster.map.members.find((m) => !excluded.includes(m.id)),
      onReplicasChanged: () => undefined,
    },
  )
}

before(async () => {
  cluster = await startTestCluster(3)
  cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
  await cp.start()
  await cp.createBlockStore({ name: 'bs', hostPath: '/var/lib/cairn' })
  await cp.publishClusterMap('bs', cluster.map)
  await cp.createStoragePolicy({ name: 'ec', dataShards: 2, parityShards: 1, chunkSizeBytes: CHUNK })
  pool = new CodecPool({ workers: 1 })
  await pool.start()
  chunkStore = new ErasureChunkStore(
    { policy: { dataShards: 2, parityShards: 1, hash: 'sha2-256', chunkSizeBytes: CHUNK }, clients: { requestDeadlineMs: 2000 } },
    { maps: { current: () => cluster.map }, codec: pool, registry: new Registry() },
  )
  await chunkStore.start()
})

after(async () => {
  await engine?.stop().catch(() => undefined)
  await chunkStore.stop()
  await pool.stop()
  await cp.stop()
  await cluster.close()
})

test('with m+1 storage nodes stopped, writes and FLUSH fail with EIO instead of being acknowledged without durability', { timeout: 60_000 }, async () => {
  await cp.createVolume({ name: 'outage', blockStore: 'bs', storagePolicy: 'ec', sizeBytes: 4 * 1024 * 1024 })
  engine = await attachVolume(
    { volumeName: 'outage', nodeId: 'node-e', options: { flushIntervalMs: 60_000 } },
    { controlPlane: cp, chunkStore, manifest: new MerkleManifest({ hash: 'sha2-256' }, { chunks: chunkStore }), journalFactory, logger: silentLogger(), registry: new Registry() },
  )
  const e = engine
  const rng = prng(41)
  const before = rng.bytes(3 * CHUNK)
  await e.pwrite(0, before, { fua: false })
  await e.flush()
  const replicas = (await cp.getVolume('outage')).status.journalReplicas
  assert.equal(replicas.length, 2)
  // Stop one journal replica and the node that could replace it: m+1 = 2 of 3 nodes are down.
  const down = [replicas[0] as string, cluster.nodes.map((n) => n.id).find((id) => !replicas.includes(id)) as string]
  for (const id of down) await cluster.stopNode(cluster.nodes.findIndex((n) => n.id === id))

  // [error, NBD command] of every refused request.
  const failures: Array<[unknown, number]> = []
  const write = e.pwrite(CHUNK, rng.bytes(1000), { fua: false }).catch((err: unknown) => failures.push([err, NBD_CMD_WRITE]))
  const flushed = await e.flush().then(
    () => true,
    (err: unknown) => (failures.push([err, NBD_CMD_FLUSH]), false),
  )
  await write
  assert.equal(flushed, false, 'FLUSH was acknowledged with fewer journal replicas than required')
  await assert.rejects(e.pwrite(2 * CHUNK, rng.bytes(10), { fua: false }), (err: Error) => (failures.push([err, NBD_CMD_WRITE]), true))
  await assert.rejects(e.flush(), (err: Error) => (failures.push([err, NBD_CMD_FLUSH]), true))
  assert.ok(failures.length >= 3)
  for (const [err, command] of failures) {
    assert.equal(toNbdErrno(err, command), NBD_EIO, `${(err as Error).name} must reach the client as EIO`)
  }
  // Never wrong data: what the engine still serves is what was written (from its dirty map), or a typed error.
  const got = await e.pread(0, before.length).catch((err: Error) => err)
  if (got instanceof Error) assert.equal(toNbdErrno(got, 1), NBD_EIO)
  else assert.ok(Buffer.from(got).equals(Buffer.from(before)), 'seed 41: reads return what was written')
})
