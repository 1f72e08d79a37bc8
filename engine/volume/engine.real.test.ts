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
import type { VolumeEngineOptions } from './options.js'
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

/** Journals made, newest last; `retainedBytesMax` for the next ones (undefined: the default). */
const journals: ReplicatedJournal[] = []
let journalRetainedBytesMax: number | undefined

const journalFactory: JournalFactory = (init) => {
  const byId = new Map(cluster.map.members.map((m) => [m.id, m]))
  const replicas = init.replicas.map((id) => byId.get(id)).filter((m) => m !== undefined)
  const journal = new ReplicatedJournal(
    {
      volumeUid: init.volumeUid,
      epoch: init.epoch,
      replicas,
      replaceTimeoutMs: 5000,
      ...(journalRetainedBytesMax === undefined ? {} : { retainedBytesMax: journalRetainedBytesMax }),
    },
    {
      pickReplacement: (excluded) => cluster.map.members.find((m) => !excluded.includes(m.id)),
      onReplicasChanged: () => undefined,
    },
  )
  journals.push(journal)
  return journal
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
  return attachWith(name, nodeId, { dirtyBytesMax: 16 * CHUNK })
}

async function attachWith(name: string, nodeId: string, options: VolumeEngineOptions): Promise<VolumeEngine> {
  const engine = await attachVolume(
    { volumeName: name, nodeId, options: { flushIntervalMs: 60_000, ...options } },
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

test('memory accounting holds under a sequential fill: dirty map, retained journal records and puts in flight stay within their bounds', async () => {
  const dirtyBytesMax = 16 * CHUNK
  const retainedMax = 8 * (CHUNK + 64)
  journalRetainedBytesMax = retainedMax
  const name = await newVolume(4 * 1024 * 1024)
  let engine: VolumeEngine
  try {
    engine = await attachWith(name, 'node-m', { dirtyBytesMax, flushThresholdBytes: 4 * CHUNK })
  } finally {
    journalRetainedBytesMax = undefined
  }
  const journal = journals.at(-1) as ReplicatedJournal
  const peak = { dirty: 0, retained: 0, puts: 0 }
  const sample = (): void => {
    peak.dirty = Math.max(peak.dirty, engine.dirtyBytes)
    peak.retained = Math.max(peak.retained, journal.retainedBytesHeld)
    peak.puts = Math.max(peak.puts, chunkStore.inFlightPutBytes)
  }
  const timer = setInterval(sample, 1)
  try {
    const rng = prng(31)
    const image = rng.bytes(4 * 1024 * 1024)
    for (let at = 0; at < image.length; at += 4 * CHUNK) {
      await Promise.all([0, 1, 2, 3].map((i) => engine.pwrite(at + i * CHUNK, image.subarray(at + i * CHUNK, at + (i + 1) * CHUNK), { fua: false }).then(sample)))
    }
    await engine.flushDirty()
    assert.ok(Buffer.from(await engine.pread(0, image.length)).equals(image), 'seed 31: the fill reads back')
  } finally {
    clearInterval(timer)
  }
  assert.ok(peak.dirty > 0 && peak.dirty <= dirtyBytesMax, `dirty map peaked at ${peak.dirty} of ${dirtyBytesMax}`)
  assert.ok(peak.retained > 0 && peak.retained <= retainedMax, `retained journal records peaked at ${peak.retained} of ${retainedMax}`)
  assert.ok(peak.puts <= 32 * 1024 * 1024, `puts in flight peaked at ${peak.puts}`)
})
