import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { CID } from 'multiformats/cid'
import { chunkCid } from '../../core/cid.js'
import { silentLogger } from '../../core/logger.js'
import { createLocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import { MerkleManifest } from '../chunks/manifest.js'
import { MemoryChunkStore } from '../chunks/testing.js'
import { Marker } from './mark.js'
import { collectRoots } from './roots.js'

const SALT = Uint8Array.from({ length: 16 }, (_, i) => 7 * i + 3)
const dataCid = (n: number): CID => chunkCid(new TextEncoder().encode(`chunk ${n}`))

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** A manifest of `count` chunks at indexes 0..count-1, and a second root with `changed` of them rewritten. */
async function twoRoots(count: number, changed: number[]) {
  const store = new MemoryChunkStore()
  const manifest = new MerkleManifest({ hash: 'sha2-256', pageCacheMaxBytes: 0 }, { chunks: store })
  const first = (await manifest.update(null, new Map(Array.from({ length: count }, (_, i) => [i, dataCid(i)] as const)))) as CID
  const second = (await manifest.update(first, new Map(changed.map((i) => [i, dataCid(1_000_000 + i)] as const)))) as CID
  store.resetCounters()
  return { store, manifest, first, second }
}

/** Every page and chunk CID reachable from `root`, by the manifest's own walkers. */
async function reachable(manifest: MerkleManifest, root: CID): Promise<CID[]> {
  const pages = await collect(manifest.pages(root))
  const chunks = (await collect(manifest.entries(root, 0, Number.MAX_SAFE_INTEGER))).map(([, c]) => c)
  return [...pages, ...chunks]
}

describe('gc mark', () => {
  it('walks each page once across roots that share subtrees, and marks every page and chunk of both', async () => {
    // 3000 chunks: a root over 3 leaves. Rewriting 10 chunks of leaf 0 gives a root sharing leaves 1 and 2.
    const { store, manifest, first, second } = await twoRoots(3000, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    const marker = new Marker(async () => store, () => ['p'])
    await marker.walk([{ cid: first, policy: 'p', source: 'snapshot/a' }, { cid: second, policy: 'p', source: 'volume/v' }])
    assert.equal(store.chunksGot, 6, 'two roots, three leaves, one rewritten leaf: six pages fetched once each')
    const mark = await marker.build({ salt: SALT })
    assert.equal(mark.markedPages, 6)
    assert.equal(mark.markedChunks, 1024 + 1024 + 1024 + (3000 - 2048), 'entries of each distinct leaf')
    for (const root of [first, second]) for (const cid of await reachable(manifest, root)) assert.ok(mark.filter.has(cid.bytes), `${cid} marked`)
    const strangers = Array.from({ length: 200 }, (_, i) => dataCid(5_000_000 + i)).filter((c) => mark.filter.has(c.bytes))
    assert.ok(strangers.length <= 1, `${strangers.length} of 200 unreferenced chunks look marked`)
  })

  it('walking the same roots again fetches nothing', async () => {
    const { store, first } = await twoRoots(2000, [0])
    const marker = new Marker(async () => store, () => ['p'])
    await marker.walk([{ cid: first, policy: 'p', source: 'v' }])
    const got = store.chunksGot
    assert.equal(await marker.walk([{ cid: first, policy: 'p', source: 'v' }]), 0)
    assert.equal(store.chunksGot, got)
  })

  it('a pinned page keeps its whole tree, read with whichever policy can; a pinned raw chunk is marked alone', async () => {
    const { store, manifest, first } = await twoRoots(1500, [])
    const failing = new MemoryChunkStore()
    const marker = new Marker(async (policy) => (policy === 'right' ? store : failing), () => ['wrong', 'right'])
    const rawPin = dataCid(42_424_242)
    marker.markChunks([rawPin])
    await marker.walk([{ cid: first, policy: undefined, source: 'pin' }])
    const mark = await marker.build({ salt: SALT })
    for (const cid of await reachable(manifest, first)) assert.ok(mark.filter.has(cid.bytes))
    assert.ok(mark.filter.has(rawPin.bytes))
    assert.equal(mark.markedChunks, 1501)
  })

  it('a pinned page no policy can read fails the mark with GcRootUnreadableError', async () => {
    const { first } = await twoRoots(10, [])
    const marker = new Marker(async () => new MemoryChunkStore(), () => ['a', 'b'])
    await assert.rejects(marker.walk([{ cid: first, policy: undefined, source: 'pin' }]), { name: 'GcRootUnreadableError' })
  })

  it('with no arena budget every leaf is fetched again to fill the filter, and nothing is missed', async () => {
    const { store, manifest, second } = await twoRoots(2500, [100])
    const marker = new Marker(async () => store, () => ['p'], { arenaBytesMax: 0, pagesPerBatch: 2 })
    await marker.walk([{ cid: second, policy: 'p', source: 'v' }])
    const mark = await marker.build({ salt: SALT })
    assert.equal(mark.refetchedLeaves, 3)
    assert.equal(mark.markedChunks, 2500)
    for (const cid of await reachable(manifest, second)) assert.ok(mark.filter.has(cid.bytes))
  })

  it('a missing page fails the walk, so no sweep can run on an incomplete mark', async () => {
    const { first } = await twoRoots(2000, [])
    const empty = new MemoryChunkStore()
    const marker = new Marker(async () => empty, () => ['p'])
    await assert.rejects(marker.walk([{ cid: first, policy: 'p', source: 'v' }]), { name: 'ChunkUnavailableError' })
  })
})

describe('gc roots', () => {
  it('are the heads and snapshots of the block store\'s volumes and its pins, nothing of another block store', async () => {
    const cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
    await cp.start()
    try {
      const { first, second } = await twoRoots(10, [1])
      await cp.createBlockStore({ name: 'bs', hostPath: '/d' })
      await cp.createBlockStore({ name: 'other', hostPath: '/d' })
      await cp.createStoragePolicy({ name: 'p', dataShards: 2, parityShards: 1 })
      for (const [name, bs] of [['v', 'bs'], ['w', 'other'], ['empty', 'bs']] as const) await cp.createVolume({ name, blockStore: bs, storagePolicy: 'p', sizeBytes: 1 << 20 })
      for (const [name, root] of [['v', first], ['w', second]] as const) {
        const att = await cp.acquireEpoch(name, 'n', 0)
        await cp.updateVolumeHead(name, { expectedRevision: att.revision, epoch: att.status.epoch }, { rootCid: root.toString(), sizeBytes: 1 << 20, journalSeq: 1 })
      }
      await cp.createSnapshot({ name: 's', volume: 'v' })
      await cp.addPin('bs', { cid: second.toString() })
      await cp.addPin('bs', { cid: dataCid(9).toString() })
      const roots = await collectRoots(cp, 'bs')
      assert.deepEqual(roots.manifests.map((r) => [r.source, r.cid.toString(), r.policy]), [
        ['volume/v', first.toString(), 'p'],
        ['snapshot/s', first.toString(), 'p'],
        ['pin', second.toString(), undefined],
      ])
      assert.deepEqual(roots.chunks.map(String), [dataCid(9).toString()])
      assert.deepEqual(roots.policies, ['p'])
      await assert.rejects(collectRoots(cp, 'nope'), { name: 'NotFoundError' })
    } finally {
      await cp.stop()
    }
  })
})
