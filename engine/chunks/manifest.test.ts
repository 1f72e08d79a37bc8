import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { chunkCid } from '../../core/cid.js'
import { MerkleManifest } from './manifest.js'
import { DAG_CBOR_CODEC, decodePage, heightFor, type Page } from './manifest-page.js'
import { MemoryChunkStore } from './testing.js'
import { seededRandom } from '../../core/seeded-random.js'

/** xorshift32: fixed seeds, replayable. */
const rng = seededRandom

const dataCid = (n: number): CID => chunkCid(new TextEncoder().encode(`chunk ${n}`))

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

function setup(): { store: MemoryChunkStore; manifest: MerkleManifest } {
  const store = new MemoryChunkStore()
  return { store, manifest: new MerkleManifest({ hash: 'sha2-256', pageCacheMaxBytes: 256 * 1024 }, { chunks: store }) }
}

async function rootPage(store: MemoryChunkStore, root: CID): Promise<Page> {
  const [bytes] = await store.getChunks([root])
  return decodePage(bytes as Uint8Array, root)
}

async function buildFrom(manifest: MerkleManifest, model: Map<number, CID>): Promise<CID | null> {
  return manifest.update(null, new Map(model))
}

/** An index drawn from ranges that exercise one, two and four levels. */
function randomIndex(r: () => number): number {
  const pick = r()
  if (pick < 0.6) return Math.floor(r() * 3000)
  if (pick < 0.9) return Math.floor(r() * 2 ** 21)
  return Math.floor(r() * 2 ** 41)
}

for (const seed of [1, 7, 42, 2024]) {
  test(`random updates match a Map model after every update (seed ${seed})`, async () => {
    const r = rng(seed)
    const { store, manifest } = setup()
    const model = new Map<number, CID>()
    let root: CID | null = null
    try {
      for (let step = 0; step < 40; step++) {
        const changes = new Map<number, CID | null>()
        const count = 1 + Math.floor(r() * 30)
        const keys = [...model.keys()]
        for (let i = 0; i < count; i++) {
          if (keys.length > 0 && r() < 0.35) changes.set(keys[Math.floor(r() * keys.length)] as number, null)
          else changes.set(randomIndex(r), r() < 0.05 ? null : dataCid(Math.floor(r() * 50)))
        }
        root = await manifest.update(root, changes)
        for (const [k, v] of changes) {
          if (v === null) model.delete(k)
          else model.set(k, v)
        }
        if (step % 5 === 0) manifest.clearCache()
        await assertMatches(manifest, store, root, model, r)
      }
    } catch (err) {
      console.error(`manifest model test failed with seed ${seed}`)
      throw err
    }
  })
}

async function assertMatches(manifest: MerkleManifest, store: MemoryChunkStore, root: CID | null, model: Map<number, CID>, r: () => number): Promise<void> {
  const expected = [...model].sort((a, b) => a[0] - b[0])
  const probes = [...model.keys(), ...Array.from({ length: 20 }, () => randomIndex(r))]
  const found = await manifest.lookup(root, probes)
  probes.forEach((index, i) => assert.equal(found[i]?.toString(), model.get(index)?.toString(), `lookup ${index}`))
  const all = await collect(manifest.entries(root, 0, Number.MAX_SAFE_INTEGER))
  assert.deepEqual(all.map(([i, c]) => [i, c.toString()]), expected.map(([i, c]) => [i, c.toString()]))
  const from = randomIndex(r)
  const to = from + Math.floor(r() * 2 ** 22)
  const sub = await collect(manifest.entries(root, from, to))
  assert.deepEqual(sub.map(([i]) => i), expected.filter(([i]) => i >= from && i < to).map(([i]) => i))
  if (model.size === 0) {
    assert.equal(root, null)
    return
  }
  assert.ok(root !== null)
  // Canonical: the height is the smallest that holds the map, and the same map has the same root.
  assert.equal((await rootPage(store, root)).level, heightFor(Math.max(...model.keys())))
  assert.ok((await buildFrom(manifest, model))?.equals(root), 'an update sequence and a fresh build agree on the root')
}

test('removing every entry gives the empty tree, null', async () => {
  const { manifest } = setup()
  const indexes = [0, 5, 1023, 1024, 2 ** 20 + 3, 2 ** 33]
  const root = await manifest.update(null, new Map(indexes.map((i) => [i, dataCid(i)])))
  assert.ok(root !== null)
  const half = await manifest.update(root, new Map(indexes.slice(0, 3).map((i) => [i, null])))
  assert.ok(half !== null)
  assert.equal(await manifest.update(half, new Map(indexes.slice(3).map((i) => [i, null]))), null)
  assert.equal(await manifest.update(null, new Map([[3, null]])), null, 'removing from the empty tree stays empty')
  assert.deepEqual(await manifest.lookup(null, [0, 1]), [undefined, undefined])
  assert.deepEqual(await collect(manifest.entries(null, 0, 100)), [])
  assert.deepEqual(await collect(manifest.pages(null)), [])
})

test('an update touching one index writes exactly height+1 pages in one putChunks call, and fetches only that path', async () => {
  const { store, manifest } = setup()
  const base = new Map<number, CID | null>()
  for (let i = 0; i < 3000; i++) base.set(i * 977, dataCid(i))
  const root = (await manifest.update(null, base)) as CID
  const height = (await rootPage(store, root)).level
  assert.equal(height, 2)
  manifest.clearCache()
  store.resetCounters()
  const next = (await manifest.update(root, new Map([[1_500_000, dataCid(99_999)]]))) as CID
  assert.equal(store.putCalls, 1)
  assert.equal(store.chunksPut, height + 1)
  assert.equal(store.chunksGot, height + 1, 'only the pages on the changed path were read')
  const oldPages = new Set((await collect(manifest.pages(root))).map(String))
  const newPages = (await collect(manifest.pages(next))).map(String)
  assert.equal(newPages.filter((p) => !oldPages.has(p)).length, height + 1, 'every other page is shared')
  store.resetCounters()
  assert.ok((await manifest.update(next, new Map([[1_500_000, dataCid(99_999)]])))?.equals(next), 'a no-op update keeps the root')
  assert.equal(store.chunksPut, 0, 'and writes nothing')
})

test('pages() yields exactly the pages reachable from the root, without fetching leaves', async () => {
  const { store, manifest } = setup()
  const r = rng(99)
  const changes = new Map<number, CID | null>()
  for (let i = 0; i < 500; i++) changes.set(randomIndex(r), dataCid(i))
  let root = (await manifest.update(null, changes)) as CID
  root = (await manifest.update(root, new Map([...changes.keys()].slice(0, 200).map((k) => [k, null])))) as CID
  // An independent walk over the stored bytes.
  const reachable = new Set<string>()
  const walk = async (cid: CID): Promise<void> => {
    reachable.add(cid.toString())
    const [bytes] = await store.getChunks([cid])
    const page = decodePage(bytes as Uint8Array, cid)
    if (page.level > 0) for (const link of page.links) await walk(link)
  }
  await walk(root)
  manifest.clearCache()
  store.resetCounters()
  const yielded = (await collect(manifest.pages(root))).map(String)
  assert.deepEqual(new Set(yielded), reachable)
  assert.equal(yielded.length, reachable.size)
  assert.ok(store.chunksGot < reachable.size, 'leaf pages are named, not fetched')
  for (const cid of yielded) assert.ok(store.has(CID.parse(cid)), `page ${cid} is stored`)
})

test('growing the height keeps every entry and reuses the old tree as slot 0', async () => {
  const { store, manifest } = setup()
  const small = new Map<number, CID | null>([0, 1, 700, 1023].map((i) => [i, dataCid(i)]))
  const root0 = (await manifest.update(null, small)) as CID
  assert.equal((await rootPage(store, root0)).level, 0)
  store.resetCounters()
  const far = 2 ** 35 + 17
  const root3 = (await manifest.update(root0, new Map([[far, dataCid(far)]]))) as CID
  const top = await rootPage(store, root3)
  assert.equal(top.level, 3)
  assert.ok((await collect(manifest.pages(root3))).some((p) => p.equals(root0)), 'the old root is shared, not rewritten')
  assert.deepEqual(
    (await collect(manifest.entries(root3, 0, Number.MAX_SAFE_INTEGER))).map(([i]) => i),
    [0, 1, 700, 1023, far],
  )
  const shrunk = await manifest.update(root3, new Map([[far, null]]))
  assert.ok(shrunk?.equals(root0), 'removing the far entry collapses back to the old root')
})

test('pages are valid DAG-CBOR blocks with CID links, and decode to the same map after the cache is cleared', async () => {
  const { store, manifest } = setup()
  const model = new Map<number, CID | null>(Array.from({ length: 2100 }, (_, i) => [i * 3, dataCid(i)]))
  const root = (await manifest.update(null, model)) as CID
  assert.equal(root.code, DAG_CBOR_CODEC)
  const [bytes] = await store.getChunks([root])
  const raw = dagCbor.decode(bytes as Uint8Array) as { level: number; links: CID[] }
  assert.equal(raw.level, 1)
  assert.ok(raw.links.every((l) => l.code === DAG_CBOR_CODEC), 'interior links are tag-42 CIDs of pages')
  const before = await collect(manifest.entries(root, 0, 10_000))
  manifest.clearCache()
  const fresh = new MerkleManifest({ hash: 'sha2-256' }, { chunks: store })
  const after = await collect(fresh.entries(root, 0, 10_000))
  assert.deepEqual(after.map(([i, c]) => [i, c.toString()]), before.map(([i, c]) => [i, c.toString()]))
  assert.equal(after.length, 2100)
})

test('bad input gets InvalidArgumentError, a malformed page ManifestPageError', async () => {
  const { store, manifest } = setup()
  await assert.rejects(manifest.lookup(null, [-1]), { name: 'InvalidArgumentError' })
  await assert.rejects(manifest.lookup(null, [1.5]), { name: 'InvalidArgumentError' })
  await assert.rejects(manifest.update(null, new Map([[2 ** 53, dataCid(1)]])), { name: 'InvalidArgumentError' })
  await assert.rejects(manifest.update(null, { size: 1 } as unknown as Map<number, CID>), { name: 'InvalidArgumentError' })
  await assert.rejects(manifest.update(null, new Map([[1, 'bafy' as unknown as CID]])), { name: 'InvalidArgumentError' })
  await assert.rejects(manifest.lookup(dataCid(1), [0]), { name: 'InvalidArgumentError' }, 'a raw CID is not a manifest root')
  await assert.rejects(collect(manifest.entries(null, 5, 2)), { name: 'InvalidArgumentError' })
  const [notAPage] = await store.putChunks([dagCbor.encode({ version: 1, level: 0, slots: [2, 1], links: [dataCid(1), dataCid(2)] })], 'dag-cbor')
  await assert.rejects(manifest.lookup(notAPage as CID, [1]), { name: 'ManifestPageError' })
  const [wrongVersion] = await store.putChunks([dagCbor.encode({ version: 2, level: 0, slots: [1], links: [dataCid(1)] })], 'dag-cbor')
  await assert.rejects(collect(manifest.entries(wrongVersion as CID, 0, 10)), { name: 'ManifestPageError' })
})
