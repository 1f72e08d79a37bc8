/**
 * The memory accounting (engine/host/memory-budget.ts) against the bytes a real engine
 * holds: the volume engine, the erasure-coded chunk store and the replicated journal in
 * this process, three storage-node daemons in their own processes (so their buffers do
 * not count). Under a burst of concurrent writes, the live ArrayBuffer bytes of this
 * process (after a forced GC, so garbage not yet collected does not count) must stay
 * within the accounting's sum for the same settings. A consumer the accounting misses,
 * or a bound a component does not enforce, shows up as bytes beyond it.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { CodecPool } from '../../core/workers/pool.js'
import type { ClusterMap } from '../../core/cluster-map.js'
import { createLocalControlPlane, type LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import { ErasureChunkStore, MerkleManifest } from '../chunks/index.js'
import { daemonMap, killDaemon, startDaemon, type Daemon } from '../chunks/test-daemons.js'
import { ReplicatedJournal } from '../journal/index.js'
import { engineMemoryBudget } from '../host/memory-budget.js'
import { attachVolume } from './attach.js'
import { prng } from './testing/random.js'

setFlagsFromString('--expose-gc')
// Freed ArrayBuffers are otherwise released by a background sweeper after the GC returns,
// so a sample right after gc() would still count garbage, more of it the busier the machine.
setFlagsFromString('--no-concurrent-array-buffer-sweeping')
const gc = runInNewContext('gc') as () => void

const KiB = 1024
const MiB = 1024 * KiB
const CHUNK = 64 * KiB
/** Small bounds, so that a missed consumer of a few MiB is a large excess. */
const SETTINGS = {
  dirtyBytesMax: 2 * MiB,
  flushBatchChunks: 8,
  flushBatchesInFlight: 2,
  lookupCacheEntries: 1024,
  journalRetainedBytesMax: 2 * MiB,
  journalWindowBytes: MiB,
  journalMessageBytesMax: 256 * KiB,
  inFlightPutBytesMax: MiB,
  cacheMaxBytes: MiB,
  pageCacheMaxBytes: MiB,
}
const GRPC_SLACK = 1.25
const WRITERS = 8
const WRITE_BYTES = 256 * KiB

let root: string
let daemons: Daemon[] = []
let map: ClusterMap
let cp: LocalControlPlane
let pool: CodecPool
let chunkStore: ErasureChunkStore

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'cairn-engine-memory-'))
  daemons = await Promise.all([0, 1, 2].map((i) => startDaemon(join(root, `n${i}`))))
  map = daemonMap(daemons)
  cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
  await cp.start()
  await cp.createBlockStore({ name: 'bs', hostPath: '/var/lib/cairn' })
  await cp.publishClusterMap('bs', map)
  await cp.createStoragePolicy({ name: 'ec', dataShards: 2, parityShards: 1, chunkSizeBytes: CHUNK })
  pool = new CodecPool({ workers: 1 })
  await pool.start()
  chunkStore = new ErasureChunkStore(
    {
      policy: { dataShards: 2, parityShards: 1, hash: 'sha2-256', chunkSizeBytes: CHUNK },
      cacheMaxBytes: SETTINGS.cacheMaxBytes,
      inFlightPutBytesMax: SETTINGS.inFlightPutBytesMax,
      clients: { requestDeadlineMs: 30_000 },
    },
    { maps: { current: () => map }, codec: pool, registry: new Registry() },
  )
  await chunkStore.start()
})

after(async () => {
  await chunkStore?.stop()
  await pool?.stop()
  await cp?.stop()
  await Promise.all(daemons.map((d) => killDaemon(d)))
  await rm(root, { recursive: true, force: true })
})

test('under a burst of concurrent writes the engine holds no more live bytes than the memory accounting allows', async (t) => {
  const volumeBytes = 24 * MiB
  await cp.createVolume({ name: 'mem', blockStore: 'bs', storagePolicy: 'ec', sizeBytes: volumeBytes })
  const seed = 4242
  // The image the writers send is allocated before the baseline: it is the clients' memory.
  const image = prng(seed).bytes(volumeBytes)
  const journals: ReplicatedJournal[] = []
  const manifest = new MerkleManifest({ hash: 'sha2-256', pageCacheMaxBytes: SETTINGS.pageCacheMaxBytes }, { chunks: chunkStore })
  const engine = await attachVolume(
    {
      volumeName: 'mem',
      nodeId: 'node-mem',
      options: { dirtyBytesMax: SETTINGS.dirtyBytesMax, flushBatchChunks: SETTINGS.flushBatchChunks, flushBatchesInFlight: SETTINGS.flushBatchesInFlight, lookupCacheEntries: SETTINGS.lookupCacheEntries },
    },
    {
      controlPlane: cp,
      chunkStore,
      manifest,
      logger: silentLogger(),
      registry: new Registry(),
      journalFactory: (init) => {
        const journal = new ReplicatedJournal(
          {
            volumeUid: init.volumeUid,
            epoch: init.epoch,
            replicas: init.replicas.map((id) => map.members.find((m) => m.id === id)).filter((m) => m !== undefined),
            retainedBytesMax: SETTINGS.journalRetainedBytesMax,
            windowBytes: SETTINGS.journalWindowBytes,
            messageBytesMax: SETTINGS.journalMessageBytesMax,
          },
          { pickReplacement: () => undefined, onReplicasChanged: () => undefined },
        )
        journals.push(journal)
        return journal
      },
    },
  )
  try {
    // Warm up first: lazily created state (channels, codec kernels, caches) is baseline, not burst.
    await engine.pwrite(volumeBytes - MiB, image.subarray(volumeBytes - MiB), { fua: false })
    await engine.flushDirty()
    gc()
    const baseBytes = process.memoryUsage().arrayBuffers
    let peakBytes = 0
    let atPeak = ''
    const sample = (): void => {
      gc()
      const bytes = process.memoryUsage().arrayBuffers - baseBytes
      if (bytes <= peakBytes) return
      peakBytes = bytes
      const j = journals.at(-1) as ReplicatedJournal
      atPeak = `dirty ${engine.dirtyBytes}, journal retained ${j.retainedBytesHeld}, puts ${chunkStore.inFlightPutBytes}`
    }
    // Writers take turns over the volume (sequential overall, WRITERS in flight), as fio does at iodepth 8.
    let next = 0
    let written = 0
    const writer = async (): Promise<void> => {
      for (let at = next; at < volumeBytes; at = next) {
        next += WRITE_BYTES
        await engine.pwrite(at, image.subarray(at, at + WRITE_BYTES), { fua: false })
        if (++written % 4 === 0) sample()
      }
    }
    await Promise.all(Array.from({ length: WRITERS }, writer))
    await engine.flushDirty()
    sample()
    const budget = engineMemoryBudget({
      volumes: 1,
      dataShards: 2,
      parityShards: 1,
      chunkSizeBytes: CHUNK,
      journalReplicas: (await cp.getVolume('mem')).status.journalReplicas.length,
      baselineBytes: 0,
      // The writers' buffers are views of the image; what the engine holds per request is its own copy.
      nbdInFlightBytes: WRITERS * WRITE_BYTES,
      ...SETTINGS,
    })
    const items = budget.items.map((i) => `${i.name} ${(i.bytes / MiB).toFixed(2)}`).join(', ')
    assert.ok(written === volumeBytes / WRITE_BYTES && peakBytes > 0)
    // grpc-js holds messages beyond our counters for a moment (its retry buffer, a call's pending
    // message): a quarter on top covers them; a consumer that escapes its bound by more, or one
    // the accounting misses, fails here (the burst writes 24 MiB against a 22 MiB accounting).
    assert.ok(peakBytes <= budget.totalBytes * GRPC_SLACK, `seed ${seed}: live bytes peaked at ${(peakBytes / MiB).toFixed(2)} MiB, accounting allows ${(budget.totalBytes / MiB).toFixed(2)} MiB (${items}); at the peak: ${atPeak}`)
    t.diagnostic(`engine.memory: live bytes peaked at ${(peakBytes / MiB).toFixed(2)} MiB of ${(budget.totalBytes / MiB).toFixed(2)} MiB accounted, ${GRPC_SLACK}× allowed (seed ${seed})`)
    const back = Buffer.from(await engine.pread(0, 4 * MiB))
    assert.ok(back.equals(image.subarray(0, 4 * MiB)), `seed ${seed}: data reads back`)
  } finally {
    await engine.stop()
  }
})
