// @kubernetes/client-node (the library Cairn's Kubernetes control plane uses)
// against the test API server: CRUD, conflicts, the status subresource,
// finalizers, label and field selectors, and watches with bookmarks and a forced 410.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node'
import { TestApiServer } from './server.js'

const crdDir = fileURLToPath(new URL('../../../crds/', import.meta.url))
const cairn = { group: 'cairn.dev', version: 'v1alpha1' }
let server: TestApiServer
let dir: string
let kc: KubeConfig
let custom: CustomObjectsApi
let core: CoreV1Api

type Obj = { metadata: { name: string; resourceVersion: string; generation?: number; deletionTimestamp?: string; finalizers?: string[]; labels?: Record<string, string> }; spec?: Record<string, unknown>; status?: Record<string, unknown> }

before(async () => {
  server = new TestApiServer({ bookmarkIntervalMs: 100 })
  await server.start()
  await server.installCrds(crdDir)
  dir = await mkdtemp(join(tmpdir(), 'cairn-client-node-'))
  await server.writeKubeconfig(join(dir, 'kubeconfig'))
  kc = new KubeConfig()
  kc.loadFromFile(join(dir, 'kubeconfig'))
  custom = kc.makeApiClient(CustomObjectsApi)
  core = kc.makeApiClient(CoreV1Api)
})

after(async () => {
  await server.stop()
  await rm(dir, { recursive: true, force: true })
})

async function httpCode(promise: Promise<unknown>): Promise<number> {
  try {
    await promise
  } catch (err) {
    return (err as { code: number }).code
  }
  return 200
}

function volume(name: string, extra: Partial<Obj['metadata']> = {}): object {
  return { apiVersion: 'cairn.dev/v1alpha1', kind: 'Volume', metadata: { name, ...extra }, spec: { blockStore: 'default', storagePolicy: 'ec', sizeBytes: 1 << 20 } }
}

test('CustomObjectsApi: create, get, 409 on duplicates and stale resourceVersions, merge patch', async () => {
  const created = (await custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: volume('v1') })) as Obj
  assert.equal(created.metadata.generation, 1)
  assert.equal(await httpCode(custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: volume('v1') })), 409)
  const got = (await custom.getClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v1' })) as Obj
  const grown = { ...got, spec: { ...got.spec, sizeBytes: 2 << 20 } }
  const replaced = (await custom.replaceClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v1', body: grown })) as Obj
  assert.equal(replaced.metadata.generation, 2)
  assert.equal(await httpCode(custom.replaceClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v1', body: grown })), 409, 'stale resourceVersion')
  const patched = (await custom.patchClusterCustomObject(
    { ...cairn, plural: 'volumes', name: 'v1', body: { metadata: { labels: { app: 'db' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )) as Obj
  assert.equal(patched.metadata.labels?.app, 'db')
  assert.equal(await httpCode(custom.getClusterCustomObject({ ...cairn, plural: 'volumes', name: 'nope' })), 404)
  assert.equal(await httpCode(custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: { ...volume('bad'), spec: { blockStore: 'x' } } })), 422)
})

test('status subresource: /status writes only status, epochs compare-and-swap on resourceVersion', async () => {
  const v = (await custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: volume('v2') })) as Obj
  const body = { ...v, status: { epoch: 1, attachment: { node: 'n1', epoch: 1 } }, spec: { ...v.spec, sizeBytes: 8 << 20 } }
  const attached = (await custom.replaceClusterCustomObjectStatus({ ...cairn, plural: 'volumes', name: 'v2', body })) as Obj
  assert.equal(attached.status?.epoch, 1)
  assert.equal(attached.spec?.sizeBytes, 1 << 20, 'spec changes through /status are ignored')
  assert.equal(attached.metadata.generation, 1)
  // A second attacher holding the old resourceVersion loses the race.
  const stale = { ...v, status: { epoch: 1, attachment: { node: 'n2', epoch: 1 } } }
  assert.equal(await httpCode(custom.replaceClusterCustomObjectStatus({ ...cairn, plural: 'volumes', name: 'v2', body: stale })), 409)
  const viaMain = (await custom.replaceClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v2', body: { ...attached, status: { epoch: 99 } } })) as Obj
  assert.equal(viaMain.status?.epoch, 1, 'status changes through the main endpoint are ignored')
})

test('finalizers: delete sets deletionTimestamp, removing the last finalizer removes the object', async () => {
  await custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: volume('v3', { finalizers: ['cairn.dev/volume'] }) })
  await custom.deleteClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v3' })
  const deleting = (await custom.getClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v3' })) as Obj
  assert.ok(deleting.metadata.deletionTimestamp)
  await custom.patchClusterCustomObject(
    { ...cairn, plural: 'volumes', name: 'v3', body: [{ op: 'remove', path: '/metadata/finalizers' }] },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  )
  assert.equal(await httpCode(custom.getClusterCustomObject({ ...cairn, plural: 'volumes', name: 'v3' })), 404)
})

test('CoreV1Api: namespaced CRUD, label selectors, paging', async () => {
  await core.createNamespace({ body: { metadata: { name: 'cairn-system' } } })
  for (let i = 0; i < 5; i++) {
    await core.createNamespacedConfigMap({ namespace: 'cairn-system', body: { metadata: { name: `cm-${i}`, labels: { parity: i % 2 === 0 ? 'even' : 'odd' } }, data: { i: String(i) } } })
  }
  const even = await core.listNamespacedConfigMap({ namespace: 'cairn-system', labelSelector: 'parity=even' })
  assert.deepEqual(even.items.map((c) => c.metadata?.name), ['cm-0', 'cm-2', 'cm-4'])
  const notIn = await core.listNamespacedConfigMap({ namespace: 'cairn-system', labelSelector: 'parity notin (even)' })
  assert.equal(notIn.items.length, 2)
  const first = await core.listNamespacedConfigMap({ namespace: 'cairn-system', limit: 2 })
  assert.equal(first.items.length, 2)
  assert.ok(first.metadata?._continue)
  const rest = await core.listNamespacedConfigMap({ namespace: 'cairn-system', limit: 10, _continue: first.metadata?._continue })
  assert.deepEqual(rest.items.map((c) => c.metadata?.name), ['cm-2', 'cm-3', 'cm-4'])
  assert.equal(await httpCode(core.createNamespacedConfigMap({ namespace: 'missing', body: { metadata: { name: 'x' } } })), 404)
  // A write after the first page, then compaction: the page's revision is gone, as after etcd compaction.
  await core.createNamespacedConfigMap({ namespace: 'cairn-system', body: { metadata: { name: 'cm-late' } } })
  server.compact()
  assert.equal(await httpCode(core.listNamespacedConfigMap({ namespace: 'cairn-system', limit: 10, _continue: first.metadata?._continue })), 410)
})

interface Seen {
  type: string
  name?: string
  rv?: string
}

/** Starts a watch and returns its events as they come, plus a way to wait for one. */
async function watchVolumes(query: Record<string, string | boolean>): Promise<{ events: Seen[]; waitFor: (p: (e: Seen) => boolean) => Promise<Seen>; done: Promise<unknown>; abort: () => void }> {
  const events: Seen[] = []
  const waiters = new Set<() => void>()
  let finish: (err: unknown) => void = () => undefined
  const done = new Promise((resolve) => (finish = resolve))
  const controller = await new Watch(kc).watch(
    '/apis/cairn.dev/v1alpha1/volumes',
    query,
    (type, obj: { metadata?: { name?: string; resourceVersion?: string }; code?: number }) => {
      events.push({ type, name: obj.metadata?.name, rv: type === 'ERROR' ? String(obj.code) : obj.metadata?.resourceVersion })
      for (const w of [...waiters]) w()
    },
    (err) => finish(err),
  )
  const waitFor = (p: (e: Seen) => boolean): Promise<Seen> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`watch event never came; saw ${JSON.stringify(events)}`)), 5000)
      const check = (): void => {
        const hit = events.find(p)
        if (hit === undefined) return
        clearTimeout(timer)
        waiters.delete(check)
        resolve(hit)
      }
      waiters.add(check)
      check()
    })
  return { events, waitFor, done, abort: () => controller.abort() }
}

test('Watch: ADDED, MODIFIED, DELETED and BOOKMARK events from a resourceVersion', async () => {
  const list = (await custom.listClusterCustomObject({ ...cairn, plural: 'volumes' })) as { metadata: { resourceVersion: string } }
  const w = await watchVolumes({ resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true })
  try {
    const v = (await custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: volume('w1') })) as Obj
    await w.waitFor((e) => e.type === 'ADDED' && e.name === 'w1')
    await custom.patchClusterCustomObject({ ...cairn, plural: 'volumes', name: 'w1', body: { metadata: { labels: { x: 'y' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
    await w.waitFor((e) => e.type === 'MODIFIED' && e.name === 'w1')
    await custom.deleteClusterCustomObject({ ...cairn, plural: 'volumes', name: 'w1' })
    const deleted = await w.waitFor((e) => e.type === 'DELETED' && e.name === 'w1')
    assert.ok(Number(deleted.rv) > Number(v.metadata.resourceVersion))
    const bookmark = await w.waitFor((e) => e.type === 'BOOKMARK')
    assert.ok(Number(bookmark.rv) >= Number(list.metadata.resourceVersion))
  } finally {
    w.abort()
  }
})

test('Watch: a resourceVersion from before compaction gets a 410 Expired ERROR event', async () => {
  const list = (await custom.listClusterCustomObject({ ...cairn, plural: 'volumes' })) as { metadata: { resourceVersion: string } }
  await custom.createClusterCustomObject({ ...cairn, plural: 'volumes', body: volume('w2') })
  server.compact()
  const w = await watchVolumes({ resourceVersion: list.metadata.resourceVersion })
  const error = await w.waitFor((e) => e.type === 'ERROR')
  assert.equal(error.rv, '410')
  await w.done
  const fresh = await watchVolumes({ resourceVersion: String(server.resourceVersion), timeoutSeconds: '1' })
  assert.equal(await fresh.done, null, 'a current resourceVersion watches until timeoutSeconds ends it')
  assert.deepEqual(fresh.events, [])
})

test('field selectors: list and watch filter on the fields each resource supports; others are a 400', async () => {
  await core.createNamespace({ body: { metadata: { name: 'fields' } } })
  const pod = (name: string, nodeName: string) =>
    core.createNamespacedPod({ namespace: 'fields', body: { metadata: { name }, spec: { nodeName, containers: [{ name: 'c', image: 'cairn:test' }] } } })
  await pod('p1', 'n1')
  await pod('p2', 'n2')
  const names = async (fieldSelector: string): Promise<string[]> =>
    (await core.listNamespacedPod({ namespace: 'fields', fieldSelector })).items.map((p) => p.metadata?.name as string).sort()
  assert.deepEqual(await names('spec.nodeName=n1'), ['p1'])
  assert.deepEqual(await names('spec.nodeName==n2'), ['p2'])
  assert.deepEqual(await names('metadata.name!=p1'), ['p2'])
  assert.deepEqual(await names('spec.nodeName=n1,metadata.name=p2'), [])
  assert.deepEqual(await names('metadata.namespace=fields'), ['p1', 'p2'])
  // Events are found by the object they are about, as `kubectl get events --field-selector involvedObject.name=…` does.
  for (const [name, about] of [['e1', 'vol-a'], ['e2', 'vol-b']]) {
    await core.createNamespacedEvent({ namespace: 'fields', body: { metadata: { name }, involvedObject: { kind: 'Volume', name: about }, reason: 'Test', type: 'Normal' } })
  }
  const events = await core.listNamespacedEvent({ namespace: 'fields', fieldSelector: 'involvedObject.name=vol-b,type=Normal' })
  assert.deepEqual(events.items.map((e) => e.metadata?.name), ['e2'])
  // kube-apiserver refuses fields a resource does not index, and set operators (fields have only =, == and !=).
  assert.equal(await httpCode(core.listNamespacedPod({ namespace: 'fields', fieldSelector: 'spec.hostname=x' })), 400)
  assert.equal(await httpCode(core.listNamespacedPod({ namespace: 'fields', fieldSelector: 'spec.nodeName in (n1)' })), 400)
  // A watch sees only the objects that match.
  const seen: string[] = []
  let signal: () => void = () => undefined
  const controller = await new Watch(kc).watch(
    '/api/v1/namespaces/fields/pods',
    { fieldSelector: 'spec.nodeName=n2' },
    (type, obj: { metadata?: { name?: string } }) => {
      seen.push(`${type} ${obj.metadata?.name}`)
      signal()
    },
    () => undefined,
  )
  try {
    const p4Seen = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ADDED p4; saw ${JSON.stringify(seen)}`)), 5000)
      signal = () => {
        if (!seen.includes('ADDED p4')) return
        clearTimeout(timer)
        resolve()
      }
      signal()
    })
    await pod('p3', 'n1')
    await pod('p4', 'n2')
    await p4Seen
    assert.ok(!seen.some((e) => e.endsWith(' p1') || e.endsWith(' p3')), `objects on n1 leaked into the watch: ${JSON.stringify(seen)}`)
    assert.ok(seen.includes('ADDED p2'), `the initial state of the matching object: ${JSON.stringify(seen)}`)
  } finally {
    controller.abort()
  }
})
