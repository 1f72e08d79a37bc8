/**
 * The engine over the real pieces: the erasure-coded chunk store and Merkle
 * manifest (engine/chunks), the replicated journal (engine/journal), and three
 * in-process storage nodes on loopback, with the Local control plane.
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
import type { JournalOp } from '../contracts.js'
import { backendConformance } from '../nbd/backend-conformance.js'
import { attachVolume, type JournalFactory } from './attach.js'
import type { VolumeEngine } from './engine.js'
import { applyToModel, prng, randomOp, runOp } from './testing/random.js'

const CHUNK = 65536
let cluster: TestCluster
let cp: LocalControlPlane
let pool: CodecPool
let chunkStore: ErasureChunkStore
let manifest: MerkleManifest
const registry = new Registry()
const engines: VolumeEngine[] = []
let volumes = 0

const journalFactory: JournalFactory = (init) => {
  const byId = new Map(cluster.map.members.map((m) => [m.id, m]))
  const replicas = init.replicas.map((id) => byId.get(id)).filter((m) => m !== undefined)
  return new ReplicatedJournal(
    { volumeUid: init.volumeUid, epoch: init.epoch, replicas, replaceTimeoutMs: 5000 },
    {
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
    { policy: { dataShards: 2, parityShards: 1, hash: 'sha2-256', chunkSizeBytes: CHUNK }, clients: { requestDeadlineMs: 5000 } },
    { maps: { current: () => cluster.map }, codec: pool, registry },
  )
  await chunkStore.start()
  manifest = new MerkleManifest({ hash: 'sha2-256' }, { chunks: chunkStore })
})

after(async () => {
  for (const e of engines) await e.stop().catch(() => undefined)
  await chunkStore.stop()
  await pool.stop()
  await cp.stop()
  await cluster.close()
})

async function attach(name: string, nodeId: string): Promise<VolumeEngine> {
  const engine = await attachVolume(
    { volumeName: name, nodeId, options: { flushIntervalMs: 60_000, dirtyBytesMax: 16 * CHUNK } },
    { controlPlane: cp, chunkStore, manifest, journalFactory, logger: silentLogger(), registry },
  )
  engines.push(engine)
  return engine
}

async function newVolume(sizeBytes: number): Promise<string> {
  const name = `real-${volumes++}`
  await cp.createVolume({ name, blockStore: 'bs', storagePolicy: 'ec', sizeBytes })
  return name
}

backendConformance('volume engine (real chunk store, manifest and journal on 3 storage nodes)', async () =>
  attach(await newVolume(4 * 1024 * 1024), 'node-x'),
)

test('real components: seeded workload, abrupt loss of the engine, re-attach recovers at least every flushed write', async () => {
  const size = 2 * 1024 * 1024
  const name = await newVolume(size)
  const first = await attach(name, 'node-a')
  const vol = await cp.getVolume(name)
  assert.equal(vol.status.journalReplicas.length, 2, 'the journal replica set is recorded')
  const rng = prng(21)
  const model = new Uint8Array(size)
  const ops: JournalOp[] = []
  let durable = 0
  for (let step = 0; step < 120; step++) {
    const roll = rng.next()
    if (roll < 0.08) {
      await first.flush()
      durable = ops.length
    } else if (roll < 0.12) {
      await first.flushDirty()
      durable = ops.length
    } else {
      const op = randomOp(rng, size, CHUNK)
      await runOp(first, op)
      ops.push(op)
      applyToModel(model, op)
    }
    if (step % 20 === 0) assert.ok(Buffer.from(await first.pread(0, size)).equals(model), `seed 21 step ${step}`)
  }
  assert.ok(Buffer.from(await first.pread(0, size)).equals(model))
  // The first engine is dropped without detach; the second one fences it at the replicas.
  const second = await attach(name, 'node-b')
  const image = Buffer.from(await second.pread(0, size))
  const replay = new Uint8Array(size)
  let matched = -1
  for (let i = 0; i <= ops.length; i++) {
    if (i >= durable && image.equals(replay)) {
      matched = i
      break
    }
    if (i < ops.length) applyToModel(replay, ops[i] as JournalOp)
  }
  assert.ok(matched >= durable, `seed 21: recovered image is no prefix of at least ${durable}/${ops.length} ops`)
  await assert.rejects(first.pwrite(0, Buffer.alloc(10, 1), { fua: true }), { name: 'VolumeFencedError' })
  await second.flushDirty()
  assert.ok(Buffer.from(await second.pread(0, size)).equals(image), 'nothing the fenced engine tried reached the volume')
})
