/**
 * The ControlPlane conformance suite. Every implementation runs it unchanged:
 *
 * ```ts
 * controlPlaneConformance('local', async () => ({ cp, cleanup, reopen, expireContinueTokens }))
 * ```
 *
 * It registers node:test cases; each case gets a fresh, started control plane from
 * the factory and calls `cleanup` at the end, pass or fail. The optional hooks let
 * an implementation take part in the cases that need a restart or expired tokens;
 * without them those cases are skipped, and say so.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { base58btc } from 'multiformats/bases/base58'
import type { ClusterMap, ControlPlane, Page, StoragePolicyInput, Volume } from './types.js'

/** What the factory hands the suite. */
export interface ConformanceHarness {
  /** A started control plane over empty storage. */
  cp: ControlPlane
  /** Stops the current control plane (it may already be stopped) and releases its storage. */
  cleanup(): Promise<void>
  /**
   * Stops the current control plane and returns a new, started one over the same storage
   * (a process restart). `cleanup` then cleans up the new one. Absent: restart cases are skipped.
   */
  reopen?(): Promise<ControlPlane>
  /**
   * Makes every continue token issued so far stale (Local: advance its clock past the TTL;
   * Kubernetes: compact past the list's resourceVersion). Absent: the stale-token case is skipped.
   */
  expireContinueTokens?(): Promise<void>
}

export type ConformanceFactory = () => Promise<ConformanceHarness>

const MiB = 1024 * 1024
const POLICY: StoragePolicyInput = { name: 'ec-2-1', dataShards: 2, parityShards: 1 }

/** A valid CIDv1 (dag-cbor, sha2-256) that differs for each `seed`. */
async function cidOf(seed: string): Promise<string> {
  return CID.create(1, 0x71, await sha256.digest(new TextEncoder().encode(seed))).toString()
}

/** A small PRNG (mulberry32), so randomized cases replay from their printed seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

async function collect<T>(fetch: (token?: string) => Promise<Page<T>>): Promise<T[]> {
  const all: T[] = []
  let token: string | undefined
  for (let pages = 0; pages < 10_000; pages++) {
    const page = await fetch(token)
    all.push(...page.items)
    if (page.continue === undefined) return all
    token = page.continue
  }
  assert.fail('list did not end within 10000 pages')
}

function names(items: { name: string }[]): string[] {
  return items.map((i) => i.name)
}

/** Registers the suite under `describe(name)`. */
export function controlPlaneConformance(name: string, factory: ConformanceFactory): void {
  const run = async (fn: (h: ConformanceHarness) => Promise<void>) => {
    const h = await factory()
    try {
      await fn(h)
    } finally {
      await h.cleanup()
    }
  }
  /** Runs `fn` with a block store 'bs' and policy 'ec-2-1' in place. */
  const seeded = (fn: (cp: ControlPlane, h: ConformanceHarness) => Promise<void>) =>
    run(async (h) => {
      await h.cp.createBlockStore({ name: 'bs', hostPath: '/var/lib/cairn' })
      await h.cp.createStoragePolicy(POLICY)
      await fn(h.cp, h)
    })
  const volume = (cp: ControlPlane, volumeName: string, sizeBytes = MiB) =>
    cp.createVolume({ name: volumeName, blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes })

  describe(`ControlPlane conformance: ${name}`, () => {
    describe('storage policies', () => policyCases(run))
    describe('block stores and cluster maps', () => blockStoreCases(run))
    describe('volumes', () => volumeCases(seeded, volume))
    describe('pagination', () => paginationCases(run, seeded, volume))
    describe('epochs and attachment', () => epochCases(seeded, volume))
    describe('read-only publishes (readers)', () => readerCases(seeded, volume))
    describe('heads and status', () => headCases(seeded, volume))
    describe('snapshots, restores and clones', () => snapshotCases(seeded, volume))
    describe('lifecycle and persistence', () => lifecycleCases(run, seeded, volume))
    describe('pins', () => pinCases(seeded))
  })
}

type Run = (fn: (h: ConformanceHarness) => Promise<void>) => Promise<void>
type Seeded = (fn: (cp: ControlPlane, h: ConformanceHarness) => Promise<void>) => Promise<void>
type MakeVolume = (cp: ControlPlane, name: string, sizeBytes?: number) => Promise<Volume>

function policyCases(run: Run): void {
  it('create applies the documented defaults and get returns the same object', () =>
    run(async ({ cp }) => {
      const p = await cp.createStoragePolicy({ name: 'p', dataShards: 4, parityShards: 2 })
      assert.equal(p.chunkSizeBytes, 65536)
      assert.equal(p.hash, 'sha2-256')
      assert.equal(p.journalReplicas, 3, 'journalReplicas defaults to m + 1')
      assert.equal(p.failureDomainKey, 'kubernetes.io/hostname')
      assert.ok(p.scrubIntervalSeconds > 0 && p.repairBandwidthBytesPerSecond > 0)
      assert.equal(typeof p.revision, 'string')
      assert.deepEqual(await cp.getStoragePolicy('p'), p)
    }))

  it('create is idempotent for the same spec and AlreadyExists for a different one', () =>
    run(async ({ cp }) => {
      const p = await cp.createStoragePolicy({ name: 'p', dataShards: 2, parityShards: 1 })
      assert.deepEqual(await cp.createStoragePolicy({ name: 'p', dataShards: 2, parityShards: 1, journalReplicas: 2 }), p)
      await assert.rejects(cp.createStoragePolicy({ name: 'p', dataShards: 3, parityShards: 1 }), {
        name: 'AlreadyExistsError',
        kind: 'already-exists',
      })
      assert.deepEqual(await cp.getStoragePolicy('p'), p, 'a refused create leaves the stored policy alone')
    }))

  it('refuses invalid policies with InvalidArgumentError', () =>
    run(async ({ cp }) => {
      const base = { name: 'p', dataShards: 2, parityShards: 1 }
      const bad: [string, Record<string, unknown>][] = [
        ['k = 0', { dataShards: 0 }],
        ['m < 0', { parityShards: -1 }],
        ['k + m > 32', { dataShards: 30, parityShards: 3 }],
        ['fractional k', { dataShards: 1.5 }],
        ['chunk not a power of two', { chunkSizeBytes: 65536 + 4096 }],
        ['chunk below 4 KiB', { chunkSizeBytes: 2048 }],
        ['chunk above 4 MiB', { chunkSizeBytes: 8 * MiB }],
        ['unknown hash', { hash: 'md5' }],
        ['journalReplicas 0', { journalReplicas: 0 }],
        ['name not DNS-1123', { name: 'Bad_Name' }],
        ['empty name', { name: '' }],
        ['bad failure domain key', { failureDomainKey: 'a b' }],
        ['string shard count', { dataShards: '2' }],
      ]
      for (const [why, change] of bad) {
        await assert.rejects(cp.createStoragePolicy({ ...base, ...change } as StoragePolicyInput), {
          name: 'InvalidArgumentError',
          kind: 'invalid-argument',
        }, why)
      }
      assert.deepEqual((await cp.listStoragePolicies()).items, [], 'nothing was stored')
    }))

  it('get of a missing policy is NotFound; delete is idempotent and refused while a volume uses it', () =>
    run(async ({ cp }) => {
      await assert.rejects(cp.getStoragePolicy('nope'), { name: 'NotFoundError', kind: 'not-found' })
      await cp.deleteStoragePolicy('nope')
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      await cp.createStoragePolicy({ name: 'p', dataShards: 1, parityShards: 0 })
      await cp.createVolume({ name: 'v', blockStore: 'bs', storagePolicy: 'p', sizeBytes: MiB })
      await assert.rejects(cp.deleteStoragePolicy('p'), { name: 'FailedPreconditionError', kind: 'failed-precondition' })
      await cp.deleteVolume('v')
      await cp.deleteStoragePolicy('p')
      await cp.deleteStoragePolicy('p')
      await assert.rejects(cp.getStoragePolicy('p'), { name: 'NotFoundError' })
    }))

  it('list returns policies by name', () =>
    run(async ({ cp }) => {
      for (const n of ['c', 'a', 'b']) await cp.createStoragePolicy({ name: n, dataShards: 1, parityShards: 0 })
      assert.deepEqual(names((await cp.listStoragePolicies()).items), ['a', 'b', 'c'])
    }))
}

const MEMBERS: ClusterMap['members'] = [
  { id: 'node-a', address: '127.0.0.1:7701', peerId: 'peer-a', meshAddress: '127.0.0.1:7801', failureDomain: 'a', weight: 1, state: 'active' },
  { id: 'node-b', address: '127.0.0.1:7702', peerId: 'peer-b', failureDomain: 'b', weight: 2.5, state: 'draining' },
]

function blockStoreCases(run: Run): void {
  it('create, get, list and idempotent delete of block stores', () =>
    run(async ({ cp }) => {
      const bs = await cp.createBlockStore({ name: 'bs', hostPath: '/var/lib/cairn', nodeSelector: { role: 'storage' } })
      assert.equal(bs.failureDomainKey, 'kubernetes.io/hostname')
      assert.deepEqual(bs.status.clusterMap, { epoch: 0, members: [] })
      assert.deepEqual(await cp.getBlockStore('bs'), bs)
      assert.deepEqual(await cp.createBlockStore({ name: 'bs', hostPath: '/var/lib/cairn', nodeSelector: { role: 'storage' } }), bs)
      await assert.rejects(cp.createBlockStore({ name: 'bs', hostPath: '/elsewhere' }), { name: 'AlreadyExistsError' })
      await assert.rejects(cp.createBlockStore({ name: 'bs2', hostPath: 'relative' }), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.createBlockStore({ name: 'BS', hostPath: '/x' }), { name: 'InvalidArgumentError' })
      // The name also names the storage-node Service (a DNS-1035 label with a 14-character prefix).
      for (const name of ['b'.repeat(50), 'bs.zone-a', '1bs']) {
        await assert.rejects(cp.createBlockStore({ name, hostPath: '/x' }), { name: 'InvalidArgumentError' }, name)
      }
      assert.equal((await cp.createBlockStore({ name: 'b'.repeat(49), hostPath: '/x' })).name, 'b'.repeat(49))
      await cp.deleteBlockStore('b'.repeat(49))
      assert.deepEqual(names((await cp.listBlockStores()).items), ['bs'])
      await cp.deleteBlockStore('bs')
      await cp.deleteBlockStore('bs')
      await assert.rejects(cp.getBlockStore('bs'), { name: 'NotFoundError', kind: 'not-found' })
    }))

  it('a block store used by a volume cannot be deleted', () =>
    run(async ({ cp }) => {
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      await cp.createStoragePolicy(POLICY)
      await cp.createVolume({ name: 'v', blockStore: 'bs', storagePolicy: POLICY.name, sizeBytes: MiB })
      await assert.rejects(cp.deleteBlockStore('bs'), { name: 'FailedPreconditionError' })
      assert.equal((await cp.getBlockStore('bs')).name, 'bs')
    }))

  it('publishing a cluster map is a CAS on its epoch: only a larger epoch replaces it', () =>
    run(async ({ cp }) => {
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      const first = await cp.publishClusterMap('bs', { epoch: 1, members: MEMBERS })
      assert.deepEqual(first, { epoch: 1, members: MEMBERS })
      assert.deepEqual(await cp.getClusterMap('bs'), first)
      await assert.rejects(cp.publishClusterMap('bs', { epoch: 1, members: [] }), { name: 'ConflictError', kind: 'aborted' })
      const third = await cp.publishClusterMap('bs', { epoch: 3, members: MEMBERS.slice(0, 1) })
      await assert.rejects(cp.publishClusterMap('bs', { epoch: 2, members: MEMBERS }), { name: 'ConflictError' })
      assert.deepEqual(await cp.getClusterMap('bs'), third)
      assert.deepEqual((await cp.getBlockStore('bs')).status.clusterMap, third)
    }))

  it('of two concurrent publishes of the same epoch exactly one wins', () =>
    run(async ({ cp }) => {
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      const results = await Promise.allSettled([
        cp.publishClusterMap('bs', { epoch: 1, members: MEMBERS.slice(0, 1) }),
        cp.publishClusterMap('bs', { epoch: 1, members: MEMBERS.slice(1) }),
      ])
      const won = results.filter((r) => r.status === 'fulfilled')
      assert.equal(won.length, 1)
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      assert.equal((lost.reason as Error).name, 'ConflictError')
      assert.deepEqual(await cp.getClusterMap('bs'), (won[0] as PromiseFulfilledResult<ClusterMap>).value)
    }))

  it('refuses invalid cluster maps and unknown block stores', () =>
    run(async ({ cp }) => {
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      const m = MEMBERS[0]!
      const bad: [string, unknown][] = [
        ['epoch 0', { epoch: 0, members: [] }],
        ['fractional epoch', { epoch: 1.5, members: [] }],
        ['duplicate ids', { epoch: 1, members: [m, { ...m, peerId: 'other' }] }],
        ['duplicate peer ids', { epoch: 1, members: [m, { ...m, id: 'other' }] }],
        ['zero weight', { epoch: 1, members: [{ ...m, weight: 0 }] }],
        ['unknown state', { epoch: 1, members: [{ ...m, state: 'sleepy' }] }],
        ['address without port', { epoch: 1, members: [{ ...m, address: '127.0.0.1' }] }],
        ['members not an array', { epoch: 1, members: 'x' }],
      ]
      for (const [why, map] of bad) {
        await assert.rejects(cp.publishClusterMap('bs', map as ClusterMap), { name: 'InvalidArgumentError' }, why)
      }
      assert.equal((await cp.getClusterMap('bs')).epoch, 0)
      await assert.rejects(cp.getClusterMap('nope'), { name: 'NotFoundError' })
      await assert.rejects(cp.publishClusterMap('nope', { epoch: 1, members: [] }), { name: 'NotFoundError' })
    }))
}

function volumeCases(seeded: Seeded, volume: MakeVolume): void {
  it('create starts empty and unattached, and get returns the same object', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v1', 8 * MiB)
      assert.equal(v.blockStore, 'bs')
      assert.equal(v.storagePolicy, 'ec-2-1')
      assert.equal(v.sizeBytes, 8 * MiB)
      assert.equal(v.source, undefined)
      assert.deepEqual(v.status.head, { rootCid: null, sizeBytes: 8 * MiB, journalSeq: 0 })
      assert.equal(v.status.epoch, 0)
      assert.equal(v.status.attachment, null)
      assert.deepEqual(v.status.readers, [])
      assert.equal(v.status.allocatedBytes, 0)
      assert.ok(typeof v.revision === 'string' && v.revision.length > 0)
      assert.ok(typeof v.uid === 'string' && v.uid.length > 0)
      assert.ok(!Number.isNaN(Date.parse(v.creationTime)))
      assert.deepEqual(await cp.getVolume('v1'), v)
      assert.deepEqual(JSON.parse(JSON.stringify(v)), v, 'volumes are plain JSON data')
    }))

  it('create is idempotent for the same spec and AlreadyExists for a different one', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v1')
      assert.deepEqual(await volume(cp, 'v1'), v)
      await assert.rejects(volume(cp, 'v1', 2 * MiB), { name: 'AlreadyExistsError', kind: 'already-exists' })
      assert.deepEqual(await cp.getVolume('v1'), v)
    }))

  it('concurrent creates: same spec both succeed with one object, different specs exactly one wins', () =>
    seeded(async (cp) => {
      const [a, b] = await Promise.all([volume(cp, 'same'), volume(cp, 'same')])
      assert.equal(a.uid, b.uid)
      const results = await Promise.allSettled([volume(cp, 'diff', MiB), volume(cp, 'diff', 2 * MiB)])
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      assert.equal((lost.reason as Error).name, 'AlreadyExistsError')
    }))

  it('refuses invalid volumes with InvalidArgumentError and unknown references with NotFoundError', () =>
    seeded(async (cp) => {
      const base = { name: 'v', blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes: MiB }
      const bad: [string, Record<string, unknown>][] = [
        ['size 0', { sizeBytes: 0 }],
        ['negative size', { sizeBytes: -4096 }],
        ['unaligned size', { sizeBytes: MiB + 1 }],
        ['fractional size', { sizeBytes: 4096.5 }],
        ['size beyond 2^53', { sizeBytes: 2 ** 60 }],
        ['string size', { sizeBytes: '1048576' }],
        ['uppercase name', { name: 'Vol' }],
        ['name with underscore', { name: 'a_b' }],
        ['name too long', { name: 'a'.repeat(254) }],
        ['source with both', { source: { snapshot: 's', volume: 'v0' } }],
        ['empty source', { source: {} }],
      ]
      for (const [why, change] of bad) {
        await assert.rejects(cp.createVolume({ ...base, ...change } as never), { name: 'InvalidArgumentError' }, why)
      }
      await assert.rejects(cp.createVolume({ ...base, storagePolicy: 'nope' }), { name: 'NotFoundError' })
      await assert.rejects(cp.createVolume({ ...base, blockStore: 'nope' }), { name: 'NotFoundError' })
      await assert.rejects(cp.createVolume({ ...base, source: { snapshot: 'nope' } }), { name: 'NotFoundError' })
      await assert.rejects(cp.createVolume({ ...base, source: { volume: 'nope' } }), { name: 'NotFoundError' })
      assert.deepEqual((await cp.listVolumes()).items, [], 'nothing was stored')
      await assert.rejects(cp.getVolume('nope'), { name: 'NotFoundError', kind: 'not-found' })
      await assert.rejects(cp.getVolume('Not_Valid'), { name: 'InvalidArgumentError' })
    }))

  it('resize grows, is a no-op at the same size, and refuses shrinking or unaligned sizes', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v')
      const grown = await cp.resizeVolume('v', 4 * MiB)
      assert.equal(grown.sizeBytes, 4 * MiB)
      assert.notEqual(grown.revision, v.revision)
      assert.deepEqual(await cp.resizeVolume('v', 4 * MiB), grown, 'the same size changes nothing')
      await assert.rejects(cp.resizeVolume('v', 2 * MiB), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.resizeVolume('v', 4 * MiB + 512), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.resizeVolume('v', 0), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.resizeVolume('nope', 4 * MiB), { name: 'NotFoundError' })
      assert.deepEqual(await cp.getVolume('v'), grown)
    }))

  it('delete is idempotent and refused while the volume is attached', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const attached = await cp.acquireEpoch('v', 'node-a', 0)
      await assert.rejects(cp.deleteVolume('v'), { name: 'FailedPreconditionError', kind: 'failed-precondition' })
      await cp.releaseAttachment('v', 'node-a', attached.status.epoch)
      await cp.deleteVolume('v')
      await cp.deleteVolume('v')
      await cp.deleteVolume('never-existed')
      await assert.rejects(cp.getVolume('v'), { name: 'NotFoundError' })
    }))

  it('a volume re-created under a deleted name is a new incarnation', () =>
    seeded(async (cp) => {
      const first = await volume(cp, 'v')
      await cp.deleteVolume('v')
      const second = await volume(cp, 'v')
      assert.notEqual(second.uid, first.uid, 'fencing keys on (uid, epoch), so the uid must change')
    }))
}

function paginationCases(run: Run, seeded: Seeded, volume: MakeVolume): void {
  it('pages through volumes by name with limit and continue', () =>
    seeded(async (cp) => {
      const all = ['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6']
      for (const n of [...all].reverse()) await volume(cp, n)
      const p1 = await cp.listVolumes({ limit: 3 })
      assert.deepEqual(names(p1.items), ['v0', 'v1', 'v2'])
      assert.equal(typeof p1.continue, 'string')
      const p2 = await cp.listVolumes({ limit: 3, continue: p1.continue! })
      assert.deepEqual(names(p2.items), ['v3', 'v4', 'v5'])
      const p3 = await cp.listVolumes({ limit: 3, continue: p2.continue! })
      assert.deepEqual(names(p3.items), ['v6'])
      assert.equal(p3.continue, undefined)
      const exact = await cp.listVolumes({ limit: 7 })
      assert.equal(exact.items.length, 7)
      assert.deepEqual(names((await cp.listVolumes()).items), all)
    }))

  it('objects that exist throughout a paginated list appear exactly once despite inserts and deletes', async () => {
    for (const seed of [1, 2, 3]) {
      try {
        await seeded((cp) => paginateWhileWriting(cp, volume, seed))
      } catch (err) {
        throw new Error(`randomized pagination failed with seed ${seed}: ${(err as Error).message}`, { cause: err })
      }
    }
  })

  it('refuses malformed continue tokens and limits with InvalidArgumentError', () =>
    seeded(async (cp) => {
      for (const n of ['a', 'b', 'c']) await volume(cp, n)
      await cp.createSnapshot({ name: 's1', volume: 'a' })
      await cp.createSnapshot({ name: 's2', volume: 'a' })
      const snapshotToken = (await cp.listSnapshots({ limit: 1 })).continue!
      const volumeToken = (await cp.listVolumes({ limit: 1 })).continue!
      assert.deepEqual(names((await cp.listVolumes({ limit: 1, continue: '' })).items), ['a'], 'empty token: first page')
      for (const token of ['garbage!', 'Z2FyYmFnZQ', '%%%', volumeToken.slice(0, -3) + '@@@', volumeToken + '\n']) {
        await assert.rejects(cp.listVolumes({ limit: 1, continue: token }), { name: 'InvalidArgumentError' }, token)
      }
      await assert.rejects(cp.listVolumes({ continue: snapshotToken }), { name: 'InvalidArgumentError' }, 'another kind')
      await assert.rejects(cp.listSnapshots({ continue: snapshotToken, volume: 'b' }), { name: 'InvalidArgumentError' })
      for (const limit of [0, -1, 1.5, 1_000_000]) {
        await assert.rejects(cp.listVolumes({ limit }), { name: 'InvalidArgumentError' }, `limit ${limit}`)
      }
    }))

  it('an expired continue token is StaleContinueTokenError (aborted); a new list works', (t) =>
    run(async (h) => {
      if (h.expireContinueTokens === undefined) return t.skip('harness cannot expire tokens')
      const { cp } = h
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      await cp.createStoragePolicy(POLICY)
      for (const n of ['a', 'b', 'c']) await volume(cp, n)
      const token = (await cp.listVolumes({ limit: 1 })).continue!
      await h.expireContinueTokens()
      await assert.rejects(cp.listVolumes({ limit: 1, continue: token }), { name: 'StaleContinueTokenError', kind: 'aborted' })
      assert.equal((await collect((c) => cp.listVolumes({ limit: 2, ...(c ? { continue: c } : {}) }))).length, 3)
    }))
}

/** Lists volumes page by page while inserting and deleting others between pages. */
async function paginateWhileWriting(cp: ControlPlane, volume: MakeVolume, seed: number): Promise<void> {
  const random = prng(seed)
  const stable = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const n = `v${String(i * 10).padStart(4, '0')}`
    await volume(cp, n)
    stable.add(n)
  }
  const transient: string[] = []
  let extra = 0
  const seen = await collect(async (token) => {
    // Insert names before, between and after the cursor, and delete one inserted earlier.
    for (let i = 0; i < 2; i++) {
      const n = `v${String(Math.floor(random() * 200)).padStart(4, '0')}-x${extra++}`
      await volume(cp, n)
      transient.push(n)
    }
    const victim = transient.splice(Math.floor(random() * transient.length), 1)[0]!
    await cp.deleteVolume(victim)
    return cp.listVolumes({ limit: 1 + Math.floor(random() * 4), ...(token ? { continue: token } : {}) })
  })
  const seenNames = names(seen)
  assert.equal(new Set(seenNames).size, seenNames.length, 'no object twice')
  assert.deepEqual([...seenNames].sort(), seenNames, 'names increase across pages')
  for (const n of stable) assert.ok(seenNames.includes(n), `${n} missing`)
}

function epochCases(seeded: Seeded, volume: MakeVolume): void {
  it('acquireEpoch grants a strictly larger epoch and records the attachment', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v')
      const a = await cp.acquireEpoch('v', 'node-a', 0)
      assert.ok(a.status.epoch > 0)
      assert.equal(a.status.attachment?.nodeId, 'node-a')
      assert.equal(a.status.attachment?.epoch, a.status.epoch)
      assert.ok(!Number.isNaN(Date.parse(a.status.attachment!.since)))
      assert.notEqual(a.revision, v.revision)
      assert.deepEqual(await cp.getVolume('v'), a)
    }))

  it('acquireEpoch with a stale expected epoch is ConflictError and changes nothing', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const a = await cp.acquireEpoch('v', 'node-a', 0)
      await assert.rejects(cp.acquireEpoch('v', 'node-b', 0), { name: 'ConflictError', kind: 'aborted' })
      await assert.rejects(cp.acquireEpoch('v', 'node-b', a.status.epoch + 1), { name: 'ConflictError' })
      assert.deepEqual(await cp.getVolume('v'), a)
    }))

  it('of concurrent acquirers with the same expected epoch exactly one wins', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      for (let round = 0, expected = 0; round < 5; round++) {
        const nodes = ['node-a', 'node-b', 'node-c']
        const results = await Promise.allSettled(nodes.map((n) => cp.acquireEpoch('v', n, expected)))
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ node: nodes[i], v: r.value }] : []))
        assert.equal(won.length, 1, `round ${round}: exactly one winner`)
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as Error).name, 'ConflictError')
        const current = await cp.getVolume('v')
        assert.ok(current.status.epoch > expected)
        assert.equal(current.status.attachment?.nodeId, won[0]!.node)
        expected = current.status.epoch
      }
    }))

  it('a takeover fences the old holder: its release changes nothing, and epochs keep rising after release', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const a = await cp.acquireEpoch('v', 'node-a', 0)
      const b = await cp.acquireEpoch('v', 'node-b', a.status.epoch)
      assert.ok(b.status.epoch > a.status.epoch)
      assert.deepEqual(await cp.releaseAttachment('v', 'node-a', a.status.epoch), b, 'the fenced holder cannot release')
      assert.deepEqual(await cp.releaseAttachment('v', 'node-a', b.status.epoch), b, 'the epoch must match the node')
      const released = await cp.releaseAttachment('v', 'node-b', b.status.epoch)
      assert.equal(released.status.attachment, null)
      assert.equal(released.status.epoch, b.status.epoch, 'release keeps the epoch')
      assert.deepEqual(await cp.releaseAttachment('v', 'node-b', b.status.epoch), released, 'release is idempotent')
      const c = await cp.acquireEpoch('v', 'node-a', released.status.epoch)
      assert.ok(c.status.epoch > b.status.epoch)
    }))

  it('a release records whether the head lags the journal: headCurrent false sets recoveryPending, true clears it, absent keeps it', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      assert.equal((await cp.getVolume('v')).status.recoveryPending, false, 'a new volume has nothing to recover')
      const a = await cp.acquireEpoch('v', 'node-a', 0)
      const forced = await cp.releaseAttachment('v', 'node-a', a.status.epoch, { headCurrent: false })
      assert.equal(forced.status.attachment, null)
      assert.equal(forced.status.recoveryPending, true)
      assert.equal((await cp.getVolume('v')).status.recoveryPending, true, 'the flag is stored')
      // An attach that failed before serving: what held before still holds.
      const b = await cp.acquireEpoch('v', 'node-b', forced.status.epoch)
      assert.equal(b.status.recoveryPending, true, 'acquiring keeps the flag')
      assert.equal((await cp.releaseAttachment('v', 'node-b', b.status.epoch, {})).status.recoveryPending, true)
      const c = await cp.acquireEpoch('v', 'node-b', b.status.epoch)
      // A fenced or foreign release changes nothing, flag included.
      assert.equal((await cp.releaseAttachment('v', 'node-a', c.status.epoch, { headCurrent: true })).status.recoveryPending, true)
      const clean = await cp.releaseAttachment('v', 'node-b', c.status.epoch, { headCurrent: true })
      assert.equal(clean.status.recoveryPending, false, 'a clean detach clears it')
      const d = await cp.acquireEpoch('v', 'node-a', clean.status.epoch)
      assert.equal((await cp.releaseAttachment('v', 'node-a', d.status.epoch)).status.recoveryPending, false, 'no report keeps the flag')
      await assert.rejects(cp.releaseAttachment('v', 'node-a', d.status.epoch, { headCurrent: 'yes' } as never), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.releaseAttachment('v', 'node-a', d.status.epoch, null as never), { name: 'InvalidArgumentError' })
    }))

  it('acquireEpoch records the publish access; the same node re-acquiring without one keeps it, another node does not', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const access = { mode: 'SINGLE_NODE_WRITER', readOnly: true }
      const a = await cp.acquireEpoch('v', 'node-a', 0, access)
      assert.deepEqual(a.status.attachment?.access, access)
      assert.deepEqual((await cp.getVolume('v')).status.attachment?.access, access, 'stored, not only returned')
      const again = await cp.acquireEpoch('v', 'node-a', a.status.epoch)
      assert.deepEqual(again.status.attachment?.access, access, "the engine's own re-acquire keeps the publish's access")
      const b = await cp.acquireEpoch('v', 'node-b', again.status.epoch)
      assert.equal(b.status.attachment?.access, undefined, 'another node starts without one')
      await assert.rejects(cp.acquireEpoch('v', 'node-a', b.status.epoch, { mode: '', readOnly: false }), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.acquireEpoch('v', 'node-a', b.status.epoch, { mode: 'SINGLE_NODE_WRITER', readOnly: 'no' } as never), { name: 'InvalidArgumentError' })
      assert.equal((await cp.getVolume('v')).status.epoch, b.status.epoch, 'a refused acquire changes nothing')
    }))

  it('epochs strictly increase over many acquisitions', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      let epoch = 0
      for (let i = 0; i < 50; i++) {
        const next = (await cp.acquireEpoch('v', i % 2 === 0 ? 'node-a' : 'node-b', epoch)).status.epoch
        assert.ok(next > epoch)
        epoch = next
      }
    }))

  it('refuses bad epoch requests', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      await assert.rejects(cp.acquireEpoch('nope', 'node-a', 0), { name: 'NotFoundError' })
      await assert.rejects(cp.acquireEpoch('v', 'Node A', 0), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.acquireEpoch('v', 'node-a', -1), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.acquireEpoch('v', 'node-a', 0.5), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.releaseAttachment('nope', 'node-a', 1), { name: 'NotFoundError' })
      await assert.rejects(cp.releaseAttachment('v', 'node-a', 0), { name: 'InvalidArgumentError' })
      assert.equal((await cp.getVolume('v')).status.epoch, 0)
    }))
}

function readerCases(seeded: Seeded, volume: MakeVolume): void {
  it('addReader records sorted readers once each; removeReader forgets them; both are idempotent', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v')
      const b = await cp.addReader('v', 'node-b')
      assert.deepEqual(b.status.readers, ['node-b'])
      assert.notEqual(b.revision, v.revision)
      const ab = await cp.addReader('v', 'node-a')
      assert.deepEqual(ab.status.readers, ['node-a', 'node-b'])
      assert.deepEqual(await cp.addReader('v', 'node-b'), ab, 'adding a reader again changes nothing, not even the revision')
      assert.equal(ab.status.epoch, 0, 'readers take no epoch')
      assert.equal(ab.status.attachment, null)
      assert.deepEqual(await cp.getVolume('v'), ab)
      const a = await cp.removeReader('v', 'node-b')
      assert.deepEqual(a.status.readers, ['node-a'])
      assert.deepEqual(await cp.removeReader('v', 'node-b'), a, 'removing a non-reader changes nothing')
      assert.deepEqual(await cp.removeReader('v', 'node-c'), a)
      assert.deepEqual((await cp.removeReader('v', 'node-a')).status.readers, [])
    }))

  it('a reader is refused while a writer holds the attachment, and admitted once it is released', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const held = await cp.acquireEpoch('v', 'node-w', 0)
      await assert.rejects(cp.addReader('v', 'node-r'), { name: 'FailedPreconditionError', kind: 'failed-precondition' })
      await assert.rejects(cp.addReader('v', 'node-w'), { name: 'FailedPreconditionError' }, 'not even the writer itself')
      assert.deepEqual(await cp.getVolume('v'), held, 'a refused add changes nothing')
      await cp.releaseAttachment('v', 'node-w', held.status.epoch)
      assert.deepEqual((await cp.addReader('v', 'node-r')).status.readers, ['node-r'])
    }))

  it('no writer takes an epoch while readers are recorded, except to recover a head that may lag its journal', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const read = await cp.addReader('v', 'node-r')
      await assert.rejects(cp.acquireEpoch('v', 'node-w', 0), { name: 'FailedPreconditionError', kind: 'failed-precondition' })
      await assert.rejects(cp.acquireEpoch('v', 'node-r', 0), { name: 'FailedPreconditionError' }, 'not even on a reader\'s node')
      assert.deepEqual(await cp.getVolume('v'), read, 'a refused acquire changes nothing')
      await cp.removeReader('v', 'node-r')
      // A writer that went away without a clean detach, then a read-only publish: the reader's node recovers first.
      const w = await cp.acquireEpoch('v', 'node-w', 0)
      await cp.releaseAttachment('v', 'node-w', w.status.epoch, { headCurrent: false })
      await cp.addReader('v', 'node-r')
      const recovering = await cp.acquireEpoch('v', 'node-r', w.status.epoch)
      assert.equal(recovering.status.attachment?.nodeId, 'node-r')
      const recovered = await cp.releaseAttachment('v', 'node-r', recovering.status.epoch, { headCurrent: true })
      assert.equal(recovered.status.recoveryPending, false)
      await assert.rejects(cp.acquireEpoch('v', 'node-w', recovered.status.epoch), { name: 'FailedPreconditionError' }, 'recovered, the readers are protected again')
    }))

  it('a volume with readers cannot be deleted until the last reader is removed', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      await cp.addReader('v', 'node-a')
      await cp.addReader('v', 'node-b')
      await assert.rejects(cp.deleteVolume('v'), { name: 'FailedPreconditionError', kind: 'failed-precondition' })
      await cp.removeReader('v', 'node-a')
      await assert.rejects(cp.deleteVolume('v'), { name: 'FailedPreconditionError' })
      await cp.removeReader('v', 'node-b')
      await cp.deleteVolume('v')
      await assert.rejects(cp.getVolume('v'), { name: 'NotFoundError' })
    }))

  it('concurrent adds and removes of different readers all land (no lost update)', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const nodes = ['node-a', 'node-b', 'node-c', 'node-d', 'node-e', 'node-f']
      await Promise.all(nodes.map((n) => cp.addReader('v', n)))
      assert.deepEqual((await cp.getVolume('v')).status.readers, nodes)
      await Promise.all(nodes.filter((_, i) => i % 2 === 0).map((n) => cp.removeReader('v', n)))
      assert.deepEqual((await cp.getVolume('v')).status.readers, ['node-b', 'node-d', 'node-f'])
    }))

  it('readers survive other status writes and refuse bad arguments', () =>
    seeded(async (cp) => {
      await volume(cp, 'v')
      const r = await cp.addReader('v', 'node-a')
      const patched = await cp.updateVolumeStatus('v', r.revision, { health: 'healthy', allocatedBytes: 4096 })
      assert.deepEqual(patched.status.readers, ['node-a'])
      assert.deepEqual((await cp.resizeVolume('v', 2 * MiB)).status.readers, ['node-a'])
      await assert.rejects(cp.addReader('nope', 'node-a'), { name: 'NotFoundError' })
      await assert.rejects(cp.removeReader('nope', 'node-a'), { name: 'NotFoundError' })
      await assert.rejects(cp.addReader('v', 'Node A'), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.removeReader('v', ''), { name: 'InvalidArgumentError' })
      assert.deepEqual((await cp.getVolume('v')).status.readers, ['node-a'])
    }))
}

function headCases(seeded: Seeded, volume: MakeVolume): void {
  it('updateVolumeHead is a CAS on revision, fenced by epoch', () =>
    seeded(async (cp) => {
      await volume(cp, 'v', 4 * MiB)
      const att = await cp.acquireEpoch('v', 'node-a', 0)
      const epoch = att.status.epoch
      const head = { rootCid: await cidOf('one'), sizeBytes: 4 * MiB, journalSeq: 10 }
      const v1 = await cp.updateVolumeHead('v', { expectedRevision: att.revision, epoch }, head)
      assert.deepEqual(v1.status.head, head)
      assert.notEqual(v1.revision, att.revision)
      const head2 = { ...head, rootCid: await cidOf('two'), journalSeq: 11 }
      await assert.rejects(cp.updateVolumeHead('v', { expectedRevision: att.revision, epoch }, head2), {
        name: 'ConflictError',
        kind: 'aborted',
      })
      const taken = await cp.acquireEpoch('v', 'node-b', epoch)
      await assert.rejects(cp.updateVolumeHead('v', { expectedRevision: taken.revision, epoch }, head2), {
        name: 'EpochFencedError',
        kind: 'failed-precondition',
      })
      assert.deepEqual((await cp.getVolume('v')).status.head, head)
      const v2 = await cp.updateVolumeHead('v', { expectedRevision: taken.revision, epoch: taken.status.epoch }, head2)
      assert.deepEqual(v2.status.head, head2)
    }))

  it('updateVolumeHead refuses bad heads: seq going back, size out of range, non-CIDs', () =>
    seeded(async (cp) => {
      await volume(cp, 'v', 4 * MiB)
      let v = await cp.acquireEpoch('v', 'node-a', 0)
      const fence = () => ({ expectedRevision: v.revision, epoch: v.status.epoch })
      v = await cp.updateVolumeHead('v', fence(), { rootCid: await cidOf('x'), sizeBytes: 4 * MiB, journalSeq: 5 })
      const cid = await cidOf('y')
      const bad: [string, unknown][] = [
        ['seq backwards', { rootCid: cid, sizeBytes: 4 * MiB, journalSeq: 4 }],
        ['size beyond volume', { rootCid: cid, sizeBytes: 8 * MiB, journalSeq: 6 }],
        ['size shrinks', { rootCid: cid, sizeBytes: 2 * MiB, journalSeq: 6 }],
        ['not a CID', { rootCid: 'hello', sizeBytes: 4 * MiB, journalSeq: 6 }],
        ['CIDv0', { rootCid: 'QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n', sizeBytes: 4 * MiB, journalSeq: 6 }],
        ['negative seq', { rootCid: cid, sizeBytes: 4 * MiB, journalSeq: -1 }],
        ['missing fields', { rootCid: cid }],
      ]
      for (const [why, head] of bad) {
        await assert.rejects(cp.updateVolumeHead('v', fence(), head as never), { name: 'InvalidArgumentError' }, why)
      }
      assert.deepEqual(await cp.getVolume('v'), v)
      await assert.rejects(cp.updateVolumeHead('nope', fence(), v.status.head), { name: 'NotFoundError' })
      const empty = await cp.updateVolumeHead('v', fence(), { rootCid: null, sizeBytes: 4 * MiB, journalSeq: 6 })
      assert.equal(empty.status.head.rootCid, null, 'null root: everything trimmed')
    }))

  it('updateVolumeStatus is a CAS on revision; of two concurrent writers exactly one wins', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v')
      const results = await Promise.allSettled([
        cp.updateVolumeStatus('v', v.revision, { health: 'healthy', allocatedBytes: 100 }),
        cp.updateVolumeStatus('v', v.revision, { health: 'degraded' }),
      ])
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      assert.equal((lost.reason as Error).name, 'ConflictError')
      const now = await cp.getVolume('v')
      const patched = await cp.updateVolumeStatus('v', now.revision, { journalReplicas: ['node-a', 'node-b'] })
      assert.deepEqual(patched.status.journalReplicas, ['node-a', 'node-b'])
      assert.equal(patched.status.health, now.status.health, 'fields not in the patch are kept')
      assert.deepEqual(patched.status.head, v.status.head)
    }))

  it('updateVolumeStatus refuses bad patches and unknown volumes', () =>
    seeded(async (cp) => {
      const v = await volume(cp, 'v')
      const bad: [string, unknown][] = [
        ['unknown health', { health: 'great' }],
        ['negative bytes', { allocatedBytes: -1 }],
        ['duplicate replicas', { journalReplicas: ['a', 'a'] }],
        ['bad replica id', { journalReplicas: ['A'] }],
        ['epoch is not patchable', { epoch: 9 }],
        ['head is not patchable', { head: v.status.head }],
      ]
      for (const [why, patch] of bad) {
        await assert.rejects(cp.updateVolumeStatus('v', v.revision, patch as never), { name: 'InvalidArgumentError' }, why)
      }
      await assert.rejects(cp.updateVolumeStatus('v', '', {}), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.updateVolumeStatus('nope', v.revision, {}), { name: 'NotFoundError' })
      assert.deepEqual(await cp.getVolume('v'), v)
    }))
}

function snapshotCases(seeded: Seeded, volume: MakeVolume): void {
  /** Volume 'src' attached by node-a with head root `cidOf('a')`. */
  const withHead = async (cp: ControlPlane) => {
    await volume(cp, 'src', 2 * MiB)
    const att = await cp.acquireEpoch('src', 'node-a', 0)
    const head = { rootCid: await cidOf('a'), sizeBytes: 2 * MiB, journalSeq: 7 }
    return cp.updateVolumeHead('src', { expectedRevision: att.revision, epoch: att.status.epoch }, head)
  }

  it("a snapshot saves the volume's current head and does not follow later writes", () =>
    seeded(async (cp) => {
      const src = await withHead(cp)
      const snap = await cp.createSnapshot({ name: 's1', volume: 'src' })
      assert.equal(snap.volume, 'src')
      assert.equal(snap.status.rootCid, src.status.head.rootCid)
      assert.equal(snap.status.sizeBytes, 2 * MiB)
      assert.equal(snap.status.readyToUse, true)
      assert.ok(!Number.isNaN(Date.parse(snap.status.creationTime)))
      const fence = { expectedRevision: src.revision, epoch: src.status.epoch }
      await cp.updateVolumeHead('src', fence, { rootCid: await cidOf('b'), sizeBytes: 2 * MiB, journalSeq: 8 })
      assert.deepEqual(await cp.getSnapshot('s1'), snap)
    }))

  it('snapshot create is idempotent per volume; get, delete and errors', () =>
    seeded(async (cp) => {
      await withHead(cp)
      await volume(cp, 'other')
      const snap = await cp.createSnapshot({ name: 's1', volume: 'src' })
      assert.deepEqual(await cp.createSnapshot({ name: 's1', volume: 'src' }), snap)
      await assert.rejects(cp.createSnapshot({ name: 's1', volume: 'other' }), { name: 'AlreadyExistsError' })
      await assert.rejects(cp.createSnapshot({ name: 's2', volume: 'nope' }), { name: 'NotFoundError' })
      await assert.rejects(cp.createSnapshot({ name: 'S2', volume: 'src' }), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.getSnapshot('nope'), { name: 'NotFoundError' })
      await cp.deleteSnapshot('s1')
      await cp.deleteSnapshot('s1')
      await assert.rejects(cp.getSnapshot('s1'), { name: 'NotFoundError' })
    }))

  it('snapshots list by name, paginated, optionally of one volume, and outlive their volume', () =>
    seeded(async (cp) => {
      await volume(cp, 'a')
      await volume(cp, 'b')
      for (const [s, v] of [['s1', 'a'], ['s2', 'b'], ['s3', 'a'], ['s4', 'a'], ['s5', 'b']]) {
        await cp.createSnapshot({ name: s!, volume: v! })
      }
      const all = await collect((c) => cp.listSnapshots({ limit: 2, ...(c ? { continue: c } : {}) }))
      assert.deepEqual(names(all), ['s1', 's2', 's3', 's4', 's5'])
      const ofA = await collect((c) => cp.listSnapshots({ volume: 'a', limit: 2, ...(c ? { continue: c } : {}) }))
      assert.deepEqual(names(ofA), ['s1', 's3', 's4'])
      await cp.deleteVolume('a')
      assert.equal((await cp.getSnapshot('s1')).volume, 'a')
    }))

  it('a volume restored from a snapshot starts at its root with a fresh journal and epoch', () =>
    seeded(async (cp) => {
      const src = await withHead(cp)
      await cp.createSnapshot({ name: 's1', volume: 'src' })
      const restored = await cp.createVolume({
        name: 'r', blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes: 4 * MiB, source: { snapshot: 's1' },
      })
      assert.deepEqual(restored.source, { snapshot: 's1' })
      assert.equal(restored.status.head.rootCid, src.status.head.rootCid)
      assert.equal(restored.status.head.journalSeq, 0)
      assert.ok(restored.status.head.sizeBytes <= restored.sizeBytes)
      assert.equal(restored.status.epoch, 0)
      assert.equal(restored.status.attachment, null)
      assert.deepEqual((await cp.getVolume('src')).status.head, src.status.head, 'the source is untouched')
    }))

  it('a clone starts at the source volume head; an empty source clones to an empty volume', () =>
    seeded(async (cp) => {
      const src = await withHead(cp)
      const clone = await cp.createVolume({
        name: 'c', blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes: 2 * MiB, source: { volume: 'src' },
      })
      assert.equal(clone.status.head.rootCid, src.status.head.rootCid)
      await volume(cp, 'empty')
      const emptyClone = await cp.createVolume({
        name: 'ec', blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes: MiB, source: { volume: 'empty' },
      })
      assert.equal(emptyClone.status.head.rootCid, null)
      assert.deepEqual(
        await cp.createVolume({ name: 'c', blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes: 2 * MiB, source: { volume: 'src' } }),
        clone,
        'clone create is idempotent',
      )
    }))

  it('restores and clones refuse a smaller size or a different policy', () =>
    seeded(async (cp) => {
      await withHead(cp)
      await cp.createSnapshot({ name: 's1', volume: 'src' })
      await cp.createStoragePolicy({ name: 'other', dataShards: 1, parityShards: 0 })
      const base = { name: 'r', blockStore: 'bs', storagePolicy: 'ec-2-1', sizeBytes: 2 * MiB }
      for (const source of [{ snapshot: 's1' }, { volume: 'src' }]) {
        await assert.rejects(cp.createVolume({ ...base, sizeBytes: MiB, source }), { name: 'InvalidArgumentError' })
        await assert.rejects(cp.createVolume({ ...base, storagePolicy: 'other', source }), { name: 'InvalidArgumentError' })
      }
      await assert.rejects(cp.getVolume('r'), { name: 'NotFoundError' })
    }))
}

function lifecycleCases(run: Run, seeded: Seeded, volume: MakeVolume): void {
  it('after stop every call is ShuttingDownError, and stop is idempotent', () =>
    run(async ({ cp }) => {
      await cp.stop()
      await cp.stop()
      await assert.rejects(cp.getVolume('v'), { name: 'ShuttingDownError', kind: 'unavailable' })
      await assert.rejects(cp.listVolumes(), { name: 'ShuttingDownError' })
      await assert.rejects(cp.createStoragePolicy(POLICY), { name: 'ShuttingDownError' })
    }))

  it('everything persists across a restart, and CAS continues from the stored revisions', (t) =>
    seeded(async (cp, h) => {
      if (h.reopen === undefined) return t.skip('harness cannot restart')
      await cp.publishClusterMap('bs', { epoch: 4, members: MEMBERS })
      await volume(cp, 'v')
      const att = await cp.acquireEpoch('v', 'node-a', 0)
      const v = await cp.updateVolumeHead('v', { expectedRevision: att.revision, epoch: att.status.epoch }, {
        rootCid: await cidOf('p'), sizeBytes: MiB, journalSeq: 3,
      })
      const snap = await cp.createSnapshot({ name: 's', volume: 'v' })
      const before = {
        bs: await cp.getBlockStore('bs'),
        policy: await cp.getStoragePolicy('ec-2-1'),
        volumes: (await cp.listVolumes()).items,
        snap,
      }
      const again = await h.reopen()
      assert.deepEqual(await again.getBlockStore('bs'), before.bs)
      assert.deepEqual(await again.getStoragePolicy('ec-2-1'), before.policy)
      assert.deepEqual((await again.listVolumes()).items, before.volumes)
      assert.deepEqual(await again.getSnapshot('s'), before.snap)
      assert.deepEqual(await again.getVolume('v'), v)
      const patched = await again.updateVolumeStatus('v', v.revision, { health: 'healthy' })
      await assert.rejects(again.updateVolumeStatus('v', v.revision, { health: 'degraded' }), { name: 'ConflictError' })
      assert.notEqual(patched.revision, v.revision)
    }))

  it('epochs never go backwards across a restart', (t) =>
    seeded(async (cp, h) => {
      if (h.reopen === undefined) return t.skip('harness cannot restart')
      await volume(cp, 'v')
      let epoch = 0
      for (let i = 0; i < 3; i++) epoch = (await cp.acquireEpoch('v', 'node-a', epoch)).status.epoch
      let current = await h.reopen()
      assert.equal((await current.getVolume('v')).status.epoch, epoch)
      await assert.rejects(current.acquireEpoch('v', 'node-b', 0), { name: 'ConflictError' })
      const next = (await current.acquireEpoch('v', 'node-b', epoch)).status.epoch
      assert.ok(next > epoch)
      current = await h.reopen()
      assert.equal((await current.getVolume('v')).status.epoch, next)
      assert.ok((await current.acquireEpoch('v', 'node-a', next)).status.epoch > next)
    }))
}

/** A valid raw CIDv1 (a data chunk's name) that differs for each `seed`. */
async function rawCidOf(seed: string): Promise<string> {
  return CID.create(1, 0x55, await sha256.digest(new TextEncoder().encode(seed))).toString()
}

function pinCases(seeded: Seeded): void {
  it('addPin is idempotent, listPins orders by CID, and a new note replaces the old one', () =>
    seeded(async (cp) => {
      const [a, b] = [await rawCidOf('a'), await cidOf('b')].sort()
      assert.deepEqual(await cp.listPins('bs'), [])
      assert.deepEqual(await cp.addPin('bs', { cid: b as string, note: 'keep' }), { cid: b, note: 'keep' })
      await cp.addPin('bs', { cid: a as string })
      assert.deepEqual(await cp.addPin('bs', { cid: b as string }), { cid: b, note: 'keep' }, 'again without a note keeps the note')
      assert.deepEqual(await cp.listPins('bs'), [{ cid: a }, { cid: b, note: 'keep' }])
      await cp.addPin('bs', { cid: b as string, note: 'other' })
      assert.deepEqual(await cp.listPins('bs'), [{ cid: a }, { cid: b, note: 'other' }])
    }))

  it('a CID written in another base is the same pin, stored in canonical form', () =>
    seeded(async (cp) => {
      const cid = await rawCidOf('x')
      const other = CID.parse(cid).toString(base58btc)
      assert.notEqual(other, cid)
      assert.deepEqual(await cp.addPin('bs', { cid: other }), { cid })
      await cp.addPin('bs', { cid })
      assert.deepEqual(await cp.listPins('bs'), [{ cid }])
      await cp.removePin('bs', other)
      assert.deepEqual(await cp.listPins('bs'), [])
    }))

  it('removePin of a CID that is not pinned is NotFoundError; pins of one block store are not another\'s', () =>
    seeded(async (cp) => {
      await cp.createBlockStore({ name: 'bs2', hostPath: '/var/lib/cairn' })
      const cid = await rawCidOf('y')
      await assert.rejects(cp.removePin('bs', cid), { name: 'NotFoundError', kind: 'not-found' })
      await cp.addPin('bs', { cid })
      assert.deepEqual(await cp.listPins('bs2'), [])
      await assert.rejects(cp.removePin('bs2', cid), { name: 'NotFoundError' })
      await cp.removePin('bs', cid)
      await assert.rejects(cp.removePin('bs', cid), { name: 'NotFoundError' })
    }))

  it('refuses bad pins with InvalidArgumentError and unknown block stores with NotFoundError', () =>
    seeded(async (cp) => {
      const v0 = 'QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n'
      const bad: unknown[] = [{ cid: '' }, { cid: 'not-a-cid' }, { cid: v0 }, { cid: 7 }, null, { cid: await rawCidOf('n'), note: 'x'.repeat(257) }]
      for (const pin of bad) await assert.rejects(cp.addPin('bs', pin as never), { name: 'InvalidArgumentError' }, JSON.stringify(pin))
      await assert.rejects(cp.removePin('bs', 'not-a-cid'), { name: 'InvalidArgumentError' })
      await assert.rejects(cp.addPin('nope', { cid: await rawCidOf('n') }), { name: 'NotFoundError' })
      await assert.rejects(cp.listPins('nope'), { name: 'NotFoundError' })
      assert.deepEqual(await cp.listPins('bs'), [], 'a refused pin stores nothing')
    }))

  it('pins persist across a restart', (t) =>
    seeded(async (cp, h) => {
      if (h.reopen === undefined) return t.skip('harness cannot restart')
      const cid = await rawCidOf('p')
      await cp.addPin('bs', { cid, note: 'golden image' })
      const again = await h.reopen()
      assert.deepEqual(await again.listPins('bs'), [{ cid, note: 'golden image' }])
    }))
}
