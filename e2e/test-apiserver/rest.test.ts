// Unit tests of the test API server's storage semantics, run against the real
// CRDs in crds/: schema pruning and defaulting, CEL rules, conflicts, the status
// subresource, finalizers, garbage collection, selectors, patches, history.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { TestApiServer } from './server.js'
import { ResourceRegistry } from './resources.js'
import { RestStorage } from './rest.js'
import { ObjectStore } from './store.js'
import { ApiError } from './errors.js'
import { jsonPatch, mergePatch, type Json, type JsonObject } from './patch.js'
import { parseLabelSelector } from './selectors.js'
import { jsonPath } from './table.js'

const crdDir = fileURLToPath(new URL('../../../crds/', import.meta.url))

async function storage(): Promise<RestStorage> {
  // The server installs CRDs through the same RestStorage the HTTP layer uses.
  const server = new TestApiServer()
  await server.installCrds(crdDir)
  return (server as unknown as { ctx: { rest: RestStorage } }).ctx.rest
}

function typeOf(rest: RestStorage, resource: string, group = 'cairn.dev', version = 'v1alpha1') {
  const rt = rest.registry.lookup(group, version, resource)
  assert.ok(rt, `${resource} is served`)
  return rt
}

function policy(name: string, spec: JsonObject): JsonObject {
  return { apiVersion: 'cairn.dev/v1alpha1', kind: 'StoragePolicy', metadata: { name }, spec: { blockStore: 'default', ...spec } }
}

function invalidCause(fn: () => unknown): { field?: string; message: string }[] {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected ApiError, got ${String(err)}`)
    assert.equal(err.reason, 'Invalid')
    assert.equal(err.code, 422)
    return err.details?.causes ?? []
  }
  assert.fail('expected 422 Invalid')
}

test('a StoragePolicy gets its schema defaults and loses unknown fields', async () => {
  const rest = await storage()
  const created = rest.create(typeOf(rest, 'storagepolicies'), undefined, { ...policy('p', { dataShards: 4, parityShards: 2, bogus: true }) })
  const spec = created.spec as JsonObject
  assert.equal(spec.chunkSizeBytes, 65536)
  assert.equal(spec.hash, 'sha2-256')
  assert.equal(spec.bogus, undefined)
  assert.equal((created.metadata as JsonObject).generation, 1)
})

test('StoragePolicy rules refuse bad shapes, each naming the field', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'storagepolicies')
  const cases: Array<[string, JsonObject, string]> = [
    ['k+m over 32', { dataShards: 30, parityShards: 10 }, 'spec.parityShards'],
    ['k zero', { dataShards: 0, parityShards: 1 }, 'spec.dataShards'],
    ['m negative', { dataShards: 1, parityShards: -1 }, 'spec.parityShards'],
    ['chunk not a power of two', { dataShards: 4, parityShards: 2, chunkSizeBytes: 12288 }, 'spec.chunkSizeBytes'],
    ['chunk too small', { dataShards: 4, parityShards: 2, chunkSizeBytes: 3000 }, 'spec.chunkSizeBytes'],
    ['unknown hash', { dataShards: 4, parityShards: 2, hash: 'md5' }, 'spec.hash'],
    ['k as a string', { dataShards: '4', parityShards: 2 }, 'spec.dataShards'],
  ]
  for (const [goal, spec, field] of cases) {
    const causes = invalidCause(() => rest.create(rt, undefined, policy('bad', spec)))
    assert.ok(causes.some((c) => c.field === field), `${goal}: expected a cause on ${field}, got ${JSON.stringify(causes)}`)
  }
  assert.ok(rest.create(rt, undefined, policy('edge', { dataShards: 16, parityShards: 16, chunkSizeBytes: 4194304 })))
})

test('immutable fields and grow-only sizes hold on update (transition rules)', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'storagepolicies')
  const p = rest.create(rt, undefined, policy('p', { dataShards: 4, parityShards: 2 }))
  const changes: JsonObject[] = [{ dataShards: 5 }, { parityShards: 1 }, { chunkSizeBytes: 8192 }, { hash: 'blake3' }]
  for (const change of changes) {
    invalidCause(() => rest.update(rt, undefined, 'p', mergePatch(p, { spec: change }), undefined))
  }
  const scrubbed = rest.update(rt, undefined, 'p', mergePatch(p, { spec: { scrubIntervalSeconds: 3600 } }), undefined)
  assert.equal((scrubbed.metadata as JsonObject).generation, 2)

  const vt = typeOf(rest, 'volumes')
  const vol = rest.create(vt, undefined, { metadata: { name: 'v' }, spec: { blockStore: 'b', storagePolicy: 'p', sizeBytes: 1 << 20 } })
  invalidCause(() => rest.update(vt, undefined, 'v', mergePatch(vol, { spec: { sizeBytes: 4096 } }), undefined))
  invalidCause(() => rest.update(vt, undefined, 'v', mergePatch(vol, { spec: { storagePolicy: 'other' } }), undefined))
  invalidCause(() => rest.update(vt, undefined, 'v', mergePatch(vol, { spec: { source: { snapshot: 's' } } }), undefined))
  const grown = rest.update(vt, undefined, 'v', mergePatch(vol, { spec: { sizeBytes: 2 << 20 } }), undefined)
  assert.equal((grown.spec as JsonObject).sizeBytes, 2 << 20)
  invalidCause(() => rest.create(vt, undefined, { metadata: { name: 'w' }, spec: { blockStore: 'b', storagePolicy: 'p', sizeBytes: 1 << 20, source: { snapshot: 's', volume: 'v' } } }))
})

test('BlockStore defaults nested objects and checks capacity bounds', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'blockstores')
  const bs = rest.create(rt, undefined, { metadata: { name: 'b' }, spec: { capacity: {}, eligibility: {} } })
  const spec = bs.spec as JsonObject
  assert.equal((spec.capacity as JsonObject).fraction, 0.8)
  assert.equal(spec.failureDomainKey, 'topology.kubernetes.io/zone')
  assert.equal(spec.hostPath, '/var/lib/cairn')
  invalidCause(() => rest.create(rt, undefined, { metadata: { name: 'c' }, spec: { capacity: { fraction: 0 } } }))
  invalidCause(() => rest.create(rt, undefined, { metadata: { name: 'd' }, spec: { capacity: { minBytes: 10, maxBytes: 5 } } }))
  invalidCause(() => rest.create(rt, undefined, { metadata: { name: 'e' }, spec: { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } } }))
})

test('BlockStore names fit the storage-node Service name: a DNS-1035 label of at most 49 characters', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'blockstores')
  // cairn-storage-<name> must be a DNS-1035 label (at most 63 characters, no dots, starting with a letter).
  for (const name of ['a'.repeat(50), 'fast.ssd', '1fast']) {
    const causes = invalidCause(() => rest.create(rt, undefined, { metadata: { name }, spec: {} }))
    assert.ok(causes.length > 0, name)
  }
  for (const name of ['a'.repeat(49), 'fast-ssd-2', 'f']) assert.ok(rest.create(rt, undefined, { metadata: { name }, spec: {} }), name)
})

test('BlockStore durability gets its defaults, refuses out-of-range pacing, and keys pins by CID', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'blockstores')
  const bs = rest.create(rt, undefined, { metadata: { name: 'dur' }, spec: {} })
  assert.deepEqual((bs.spec as JsonObject).durability, {
    memberDownTimeoutSeconds: 600,
    scrubBytesPerSecond: 8388608,
    scrubIntervalSeconds: 86400,
    repairBandwidthBytesPerSecond: 67108864,
    repairIntervalSeconds: 60,
    gcIntervalSeconds: 3600,
    gcGracePeriodSeconds: 3600,
  })
  const bad: Array<[string, JsonObject, string]> = [
    ['down timeout too short', { durability: { memberDownTimeoutSeconds: 5 } }, 'spec.durability.memberDownTimeoutSeconds'],
    ['scrub pace too slow', { durability: { scrubBytesPerSecond: 1 } }, 'spec.durability.scrubBytesPerSecond'],
    ['repair cap zero', { durability: { repairBandwidthBytesPerSecond: 0 } }, 'spec.durability.repairBandwidthBytesPerSecond'],
    ['gc every second', { durability: { gcIntervalSeconds: 1 } }, 'spec.durability.gcIntervalSeconds'],
    ['no grace', { durability: { gcGracePeriodSeconds: 0 } }, 'spec.durability.gcGracePeriodSeconds'],
    ['empty pin', { pins: [{ cid: '' }] }, 'spec.pins[0].cid'],
    ['long note', { pins: [{ cid: 'bafy1', note: 'x'.repeat(257) }] }, 'spec.pins[0].note'],
    ['duplicate pin', { pins: [{ cid: 'bafy1' }, { cid: 'bafy1' }] }, 'spec.pins[1]'],
    ['too many pins', { pins: Array.from({ length: 1025 }, (_, i) => ({ cid: `bafy${i}` })) }, 'spec.pins'],
  ]
  for (const [goal, spec, field] of bad) {
    const causes = invalidCause(() => rest.create(rt, undefined, { metadata: { name: 'bad' }, spec }))
    assert.ok(causes.some((c) => c.field === field), `${goal}: expected a cause on ${field}, got ${JSON.stringify(causes)}`)
  }
  const pinned = rest.create(rt, undefined, { metadata: { name: 'pinned' }, spec: { pins: [{ cid: 'bafy1', note: 'golden image' }, { cid: 'bafy2' }] } })
  assert.equal(((pinned.spec as JsonObject).pins as Json[]).length, 2)
})

test('stale resourceVersion conflicts; the status subresource isolates status from spec', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'storagepolicies')
  const p = rest.create(rt, undefined, policy('p', { dataShards: 2, parityShards: 1 }))
  const withStatus = rest.update(rt, undefined, 'p', { ...p, status: { conditions: [{ type: 'Satisfiable', status: 'True', lastTransitionTime: '2024-01-01T00:00:00Z' }] } }, 'status')
  assert.equal((withStatus.metadata as JsonObject).generation, 1, 'status writes do not bump generation')
  assert.throws(() => rest.update(rt, undefined, 'p', mergePatch(p, { spec: { scrubIntervalSeconds: 600 } }), undefined), (e: unknown) => e instanceof ApiError && e.reason === 'Conflict')
  const ignored = rest.update(rt, undefined, 'p', { ...withStatus, status: { conditions: [] } }, undefined)
  assert.deepEqual(ignored.status, withStatus.status, 'main endpoint ignores status changes')
  assert.equal((ignored.metadata as JsonObject).resourceVersion, (withStatus.metadata as JsonObject).resourceVersion, 'a no-op write keeps the resourceVersion')
})

test('finalizers hold a deleted object until they are removed; owners take dependents with them', async () => {
  const rest = await storage()
  const rt = typeOf(rest, 'volumes')
  const cm = typeOf(rest, 'configmaps', '', 'v1')
  const vol = rest.create(rt, undefined, { metadata: { name: 'v', finalizers: ['cairn.dev/volume'] }, spec: { blockStore: 'b', storagePolicy: 'p', sizeBytes: 4096 } })
  const uid = String((vol.metadata as JsonObject).uid)
  rest.create(cm, 'default', { metadata: { name: 'dep', ownerReferences: [{ apiVersion: 'cairn.dev/v1alpha1', kind: 'Volume', name: 'v', uid }] } })
  const pending = rest.delete(rt, undefined, 'v')
  assert.equal(pending.removed, false)
  const deleting = rest.get(rt, undefined, 'v')
  assert.ok((deleting.metadata as JsonObject).deletionTimestamp)
  invalidCause(() => rest.update(rt, undefined, 'v', mergePatch(deleting, { metadata: { finalizers: ['cairn.dev/volume', 'x/y'] } }), undefined))
  rest.update(rt, undefined, 'v', mergePatch(deleting, { metadata: { finalizers: null } }), undefined)
  assert.throws(() => rest.get(rt, undefined, 'v'), (e: unknown) => e instanceof ApiError && e.reason === 'NotFound')
  await new Promise<void>((resolve) => setImmediate(resolve))
  assert.throws(() => rest.get(cm, 'default', 'dep'), (e: unknown) => e instanceof ApiError && e.reason === 'NotFound', 'background GC removed the dependent')
})

test('watch history is bounded: past the window, resourceVersions expire', () => {
  const registry = new ResourceRegistry()
  const store = new ObjectStore(3)
  const rest = new RestStorage(registry, store)
  const ns = registry.lookup('', 'v1', 'namespaces')
  assert.ok(ns)
  const start = store.currentRevision()
  for (let i = 0; i < 5; i++) rest.create(ns, undefined, { metadata: { name: `n${i}` } })
  assert.throws(() => store.eventsSince(start), (e: unknown) => e instanceof ApiError && e.reason === 'Expired' && e.code === 410)
  assert.equal(store.eventsSince(store.currentRevision() - 3).length, 3)
  store.compact()
  assert.throws(() => store.eventsSince(store.currentRevision() - 1), (e: unknown) => e instanceof ApiError && e.code === 410)
  assert.deepEqual(store.eventsSince(store.currentRevision()), [])
})

test('label selectors follow the Kubernetes grammar', () => {
  const labels = { tier: 'gold', zone: 'a' }
  const cases: Array<[string, boolean]> = [
    ['tier=gold', true],
    ['tier==gold', true],
    ['tier!=gold', false],
    ['tier in (gold,silver)', true],
    ['tier notin (gold)', false],
    ['zone', true],
    ['!zone', false],
    ['!missing,tier=gold,zone in (a, b)', true],
    ['missing!=x', true],
  ]
  for (const [selector, want] of cases) assert.equal(parseLabelSelector(selector).matches(labels), want, selector)
  assert.throws(() => parseLabelSelector('tier=gold!'), (e: unknown) => e instanceof ApiError && e.reason === 'BadRequest')
})

test('merge patch and JSON patch follow RFC 7386 and RFC 6902', () => {
  const doc: Json = { a: { b: 1, c: [1, 2] }, d: 'x' }
  assert.deepEqual(mergePatch(doc, { a: { b: null, c: [3] }, e: true }), { a: { c: [3] }, d: 'x', e: true })
  const patched = jsonPatch(doc, [
    { op: 'add', path: '/a/c/-', value: 3 },
    { op: 'replace', path: '/d', value: 'y' },
    { op: 'move', from: '/a/b', path: '/b' },
    { op: 'test', path: '/b', value: 1 },
  ])
  assert.deepEqual(patched, { a: { c: [1, 2, 3] }, d: 'y', b: 1 })
  assert.throws(() => jsonPatch(doc, [{ op: 'test', path: '/d', value: 'z' }]), (e: unknown) => e instanceof ApiError && e.code === 422)
  assert.throws(() => jsonPatch(doc, [{ op: 'remove', path: '/nope' }]), (e: unknown) => e instanceof ApiError)
})

test('printer-column JSONPath handles fields, indexes and condition filters', () => {
  const obj: Json = { status: { conditions: [{ type: 'Progressing', status: 'False' }, { type: 'Ready', status: 'True' }] }, spec: { k: 4 } }
  assert.equal(jsonPath(obj, '.spec.k'), 4)
  assert.equal(jsonPath(obj, '.status.conditions[?(@.type=="Ready")].status'), 'True')
  assert.equal(jsonPath(obj, '.status.conditions[0].type'), 'Progressing')
  assert.equal(jsonPath(obj, '.status.missing'), undefined)
})
