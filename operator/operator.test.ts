// The operator against the test API server, in process: BlockStore eligibility
// and ownership, StoragePolicy satisfiability, Volume/Snapshot finalizers and
// events, conflict retries, 410 relists and cluster-map epochs.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { BLOCKSTORE_FINALIZER, ownedNames, SNAPSHOT_FINALIZER, storageNodeLabel, VOLUME_FINALIZER } from './constants.js'
import { KubeApiError, KubeClient } from './kube.js'
import { Operator } from './operator.js'
import { updateStatus } from './status.js'
import {
  MERGE,
  NAMESPACE,
  createCr,
  createNode,
  deleteCr,
  getCr,
  labelNode,
  optional,
  startCluster,
  waitFor,
  type Cluster,
} from './test-support.js'
import type { BlockStoreObject, Condition, SnapshotObject, StoragePolicyObject, VolumeObject } from './types.js'

let c: Cluster
let operator: Operator
const registry = new Registry()
const GiB = 2 ** 30
const STORAGE = { 'cairn.dev/role': 'storage' }

before(async () => {
  c = await startCluster()
  operator = new Operator(
    { namespace: NAMESPACE, identity: 'test-operator', image: 'cairn:test', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200, backoffBaseMs: 20, backoffMaxMs: 500, watchTimeoutSeconds: 5 },
    { kubeConfig: c.kc, logger: silentLogger(), registry },
  )
  await operator.start()
  await waitFor('leadership', async () => operator.elector.isLeader())
})

after(async () => {
  await operator.stop()
  await c.close()
})

async function labelled(key: string): Promise<string[]> {
  const nodes = await c.core.listNode({ labelSelector: `${key}=true` })
  return nodes.items.map((n) => n.metadata?.name as string).sort()
}

describe('BlockStore', () => {
  it('labels exactly the three eligible nodes of five, follows relabelling both ways, and cleans up everything on delete', async () => {
    await createNode(c, 'a1', { labels: { ...STORAGE, 'topology.kubernetes.io/zone': 'z1' } })
    await createNode(c, 'a2', { labels: { ...STORAGE, 'topology.kubernetes.io/zone': 'z2' }, memory: '4096Mi' })
    await createNode(c, 'a3', { labels: { ...STORAGE, 'cairn.dev/disk-bytes': String(50 * GiB) } })
    await createNode(c, 'a4', { labels: STORAGE, disk: '5Gi' }) // too little disk
    await createNode(c, 'a5', { labels: { 'cairn.dev/role': 'compute' } }) // not selected
    await createCr(c, 'BlockStore', 'bs1', { nodeSelector: { matchLabels: STORAGE }, capacity: { fraction: 0.5, maxBytes: 40 * GiB } })
    const key = storageNodeLabel('bs1')
    await waitFor('three labelled nodes', async () => JSON.stringify(await labelled(key)) === '["a1","a2","a3"]')
    const names = ownedNames('bs1')
    const ds = await waitFor('DaemonSet', () => optional(c.apps.readNamespacedDaemonSet({ name: names.daemonSet, namespace: NAMESPACE })))
    assert.deepEqual(ds.spec?.template.spec?.nodeSelector, { [key]: 'true' })
    assert.equal(ds.metadata?.ownerReferences?.[0]?.controller, true)
    assert.equal(ds.spec?.template.spec?.containers[0]?.readinessProbe?.httpGet?.path, '/readyz')
    assert.equal(ds.spec?.template.spec?.volumes?.[0]?.hostPath?.path, '/var/lib/cairn')
    const bs = await waitFor('status with three members', async () => {
      const got = await getCr<BlockStoreObject>(c, 'BlockStore', 'bs1')
      return got?.status?.eligibleNodes === 3 && got.status.clusterMap?.members.length === 3 ? got : undefined
    })
    const members = bs.status?.clusterMap?.members ?? []
    assert.deepEqual(members.map((m) => [m.id, m.failureDomain, m.weightBytes]), [
      ['a1', 'z1', 40 * GiB], // 50 GiB clamped to maxBytes
      ['a2', 'z2', 40 * GiB],
      ['a3', 'a3', 25 * GiB], // disk from the label; domain falls back to the hostname
    ])
    assert.equal(bs.status?.observedGeneration, 1)
    assert.ok(bs.metadata.finalizers?.includes(BLOCKSTORE_FINALIZER))

    // Eligibility moves both ways: a4 gets a bigger disk label, a1 leaves the selector.
    await labelNode(c, 'a4', { 'cairn.dev/disk-bytes': String(20 * GiB) })
    await labelNode(c, 'a1', { 'cairn.dev/role': 'compute' })
    await waitFor('a2, a3, a4 labelled', async () => JSON.stringify(await labelled(key)) === '["a2","a3","a4"]')
    await labelNode(c, 'a1', { 'cairn.dev/role': 'storage' })
    await waitFor('a1 back', async () => (await labelled(key)).length === 4)
    const secret = await c.core.readNamespacedSecret({ name: names.secret, namespace: NAMESPACE })
    const token = secret.data?.token
    assert.ok(token !== undefined && token.length > 20)

    await deleteCr(c, 'BlockStore', 'bs1')
    await waitFor('BlockStore gone', async () => (await getCr(c, 'BlockStore', 'bs1')) === undefined)
    await waitFor('labels removed', async () => (await labelled(key)).length === 0)
    await waitFor('owned objects collected', async () => {
      const left = await Promise.all([
        optional(c.apps.readNamespacedDaemonSet({ name: names.daemonSet, namespace: NAMESPACE })),
        optional(c.core.readNamespacedService({ name: names.service, namespace: NAMESPACE })),
        optional(c.core.readNamespacedSecret({ name: names.secret, namespace: NAMESPACE })),
      ])
      return left.every((x) => x === undefined)
    })
  })

  it('moves the cluster-map epoch exactly when membership changes', async () => {
    for (const n of ['e1', 'e2']) await createNode(c, n, { labels: { 'cairn.dev/role': 'epoch' } })
    await createCr(c, 'BlockStore', 'bs-epoch', { nodeSelector: { matchLabels: { 'cairn.dev/role': 'epoch' } } })
    const epochOf = async (): Promise<BlockStoreObject['status']> => (await getCr<BlockStoreObject>(c, 'BlockStore', 'bs-epoch'))?.status
    const first = await waitFor('two members', async () => ((await epochOf())?.clusterMap?.members.length === 2 ? epochOf() : undefined))
    const epoch = first?.clusterMap?.epoch ?? -1
    assert.ok(epoch >= 1)
    // Changes that are not membership: an unrelated label, a spec change that does not move members.
    await labelNode(c, 'e1', { unrelated: 'x' })
    await c.custom.patchClusterCustomObject({ group: 'cairn.dev', version: 'v1alpha1', plural: 'blockstores', name: 'bs-epoch', body: { spec: { image: 'cairn:other' } } }, MERGE)
    await waitFor('generation 2 observed', async () => (await epochOf())?.observedGeneration === 2)
    assert.equal((await epochOf())?.clusterMap?.epoch, epoch, 'no membership change, no new epoch')
    // A peer id appearing is a member change: exactly one step.
    await c.core.patchNode({ name: 'e2', body: { metadata: { annotations: { 'cairn.dev/peer-id': '12D3KooWpeer2' } } } }, MERGE)
    await waitFor('peer id published', async () => (await epochOf())?.clusterMap?.members.find((m) => m.id === 'e2')?.peerId === '12D3KooWpeer2')
    assert.equal((await epochOf())?.clusterMap?.epoch, epoch + 1)
    // A node joining: one more.
    await createNode(c, 'e3', { labels: { 'cairn.dev/role': 'epoch' } })
    await waitFor('three members', async () => (await epochOf())?.clusterMap?.members.length === 3)
    assert.equal((await epochOf())?.clusterMap?.epoch, epoch + 2)
  })
})

describe('BlockStore conditions', () => {
  it('Ready, Progressing and readyNodes follow the DaemonSet rollout', async () => {
    for (const n of ['r1', 'r2']) await createNode(c, n, { labels: { 'cairn.dev/role': 'rollout' } })
    await createCr(c, 'BlockStore', 'bs-ready', { nodeSelector: { matchLabels: { 'cairn.dev/role': 'rollout' } } })
    const condition = (bs: BlockStoreObject | undefined, type: string): Condition | undefined => bs?.status?.conditions?.find((x) => x.type === type)
    // No pod scheduled yet: not Ready, rolling out.
    const rolling = await waitFor('rollout in progress', async () => {
      const bs = await getCr<BlockStoreObject>(c, 'BlockStore', 'bs-ready')
      return bs?.status?.eligibleNodes === 2 && condition(bs, 'Progressing') !== undefined ? bs : undefined
    })
    assert.deepEqual([condition(rolling, 'Ready')?.status, condition(rolling, 'Ready')?.reason], ['False', 'NodesNotReady'])
    assert.deepEqual([condition(rolling, 'Progressing')?.status, condition(rolling, 'Progressing')?.reason], ['True', 'RolloutInProgress'])
    assert.equal(rolling.status?.readyNodes, 0)
    assert.equal(condition(rolling, 'Ready')?.observedGeneration, 1)
    // The DaemonSet controller (a kubelet's work, absent here) reports both pods scheduled, updated and ready.
    const name = ownedNames('bs-ready').daemonSet
    const ds = await c.apps.readNamespacedDaemonSet({ name, namespace: NAMESPACE })
    const status = { observedGeneration: ds.metadata?.generation ?? 1, desiredNumberScheduled: 2, currentNumberScheduled: 2, updatedNumberScheduled: 2, numberReady: 2, numberMisscheduled: 0 }
    await c.apps.patchNamespacedDaemonSetStatus({ name, namespace: NAMESPACE, body: { status } }, MERGE)
    const ready = await waitFor('Ready', async () => {
      const bs = await getCr<BlockStoreObject>(c, 'BlockStore', 'bs-ready')
      return condition(bs, 'Ready')?.status === 'True' ? bs : undefined
    })
    assert.equal(ready.status?.readyNodes, 2)
    assert.equal(condition(ready, 'Ready')?.reason, 'AllNodesReady')
    assert.deepEqual([condition(ready, 'Progressing')?.status, condition(ready, 'Progressing')?.reason], ['False', 'RolloutComplete'])
    assert.equal(condition(ready, 'Degraded')?.status, 'False')
    // One node's pod stops being ready: Degraded, no longer Ready.
    await c.apps.patchNamespacedDaemonSetStatus({ name, namespace: NAMESPACE, body: { status: { ...status, numberReady: 1 } } }, MERGE)
    const degraded = await waitFor('Degraded', async () => {
      const bs = await getCr<BlockStoreObject>(c, 'BlockStore', 'bs-ready')
      return condition(bs, 'Degraded')?.status === 'True' ? bs : undefined
    })
    assert.equal(degraded.status?.readyNodes, 1)
    assert.equal(condition(degraded, 'Ready')?.status, 'False')
  })
})

describe('StoragePolicy', () => {
  it('8+3 over six failure domains is Satisfiable=False with its reason; 4+2 is True', async () => {
    for (let i = 0; i < 6; i++) await createNode(c, `p${i}`, { labels: { 'cairn.dev/role': 'six', 'topology.kubernetes.io/zone': `zone-${i}` } })
    await createCr(c, 'BlockStore', 'six', { nodeSelector: { matchLabels: { 'cairn.dev/role': 'six' } } })
    await createCr(c, 'StoragePolicy', 'wide', { blockStore: 'six', dataShards: 8, parityShards: 3 })
    await createCr(c, 'StoragePolicy', 'fits', { blockStore: 'six', dataShards: 4, parityShards: 2 })
    const satisfiable = async (name: string) =>
      (await getCr<StoragePolicyObject>(c, 'StoragePolicy', name))?.status?.conditions?.find((x) => x.type === 'Satisfiable' && x.observedGeneration === 1)
    const wide = await waitFor('wide judged with six domains', async () => {
      const cond = await satisfiable('wide')
      return cond?.message?.includes('has 6') ? cond : undefined
    })
    assert.equal(wide.status, 'False')
    assert.equal(wide.reason, 'InsufficientFailureDomains')
    assert.match(wide.message ?? '', /8\+3/)
    const fits = await waitFor('fits judged', async () => {
      const cond = await satisfiable('fits')
      return cond?.status === 'True' ? cond : undefined
    })
    assert.equal(fits.reason, 'EnoughFailureDomains')
    assert.equal((await getCr<StoragePolicyObject>(c, 'StoragePolicy', 'fits'))?.status?.failureDomains, 6)
  })
})

describe('Volume and Snapshot', () => {
  it('get a finalizer, health from the cluster map, an Event per state change, and release on delete', async () => {
    await createCr(c, 'Volume', 'vol1', { blockStore: 'six', storagePolicy: 'fits', sizeBytes: 1 << 20 })
    const ready = async () => (await getCr<VolumeObject>(c, 'Volume', 'vol1'))?.status?.conditions?.find((x) => x.type === 'Ready')
    // No storage-node pod has ever been ready: six Joining members are more than the 2 lost shards 4+2 tolerates.
    await waitFor('unavailable', async () => (await ready())?.reason === 'Unavailable')
    const vol = (await getCr<VolumeObject>(c, 'Volume', 'vol1')) as VolumeObject
    assert.equal(vol.status?.health, 'Unavailable')
    assert.ok(vol.metadata.finalizers?.includes(VOLUME_FINALIZER))
    const events = async (): Promise<string[]> =>
      (await c.core.listNamespacedEvent({ namespace: NAMESPACE })).items.filter((e) => e.involvedObject.name === 'vol1').map((e) => e.reason as string)
    await waitFor('an Unavailable event', async () => (await events()).includes('Unavailable'))
    await createCr(c, 'Snapshot', 'snap1', { volume: 'vol1' })
    const snapReady = async () => (await getCr<SnapshotObject>(c, 'Snapshot', 'snap1'))?.status?.conditions?.find((x) => x.type === 'Ready')
    await waitFor('snapshot pending', async () => (await snapReady())?.reason === 'SnapshotPending')
    assert.ok((await getCr<SnapshotObject>(c, 'Snapshot', 'snap1'))?.metadata.finalizers?.includes(SNAPSHOT_FINALIZER))
    const snapEvents = async (): Promise<string[]> =>
      (await c.core.listNamespacedEvent({ namespace: NAMESPACE })).items.filter((e) => e.involvedObject.name === 'snap1' && e.involvedObject.kind === 'Snapshot').map((e) => e.reason as string)
    await waitFor('a SnapshotPending event', async () => (await snapEvents()).includes('SnapshotPending'))
    await deleteCr(c, 'Volume', 'vol1')
    await waitFor('volume released', async () => (await getCr(c, 'Volume', 'vol1')) === undefined)
    assert.ok((await events()).includes('Deleting'))
    // The snapshot outlives its volume, says why it cannot become ready, and records the change.
    await waitFor('snapshot of a deleted volume', async () => (await snapReady())?.reason === 'VolumeNotFound')
    await waitFor('a VolumeNotFound event', async () => (await snapEvents()).includes('VolumeNotFound'))
    await deleteCr(c, 'Snapshot', 'snap1')
    await waitFor('snapshot released', async () => (await getCr(c, 'Snapshot', 'snap1')) === undefined)
    assert.ok((await snapEvents()).includes('Deleting'))
  })
})

describe('controller runtime against the API server', () => {
  it('retries a conflicting status update and keeps the field the other writer set', async () => {
    await createCr(c, 'Volume', 'vol-conflict', { blockStore: 'six', storagePolicy: 'fits', sizeBytes: 1 << 20 })
    // A client of its own, so the running operator's writes do not go through the hook below.
    const kube = new KubeClient(c.kc, { registry: new Registry(), identity: 'conflict-test', isLeader: () => true })
    const original = kube.replaceCrStatus.bind(kube)
    let writes = 0
    // Another writer (the CSI driver publishing a head) moves between our read and our write, once.
    kube.replaceCrStatus = async (kind, obj) => {
      writes++
      if (writes === 1) {
        // The other writer retries its own conflicts too (the running operator may write this Volume's conditions).
        await waitFor('the other writer', async () => {
          const theirs = (await getCr<VolumeObject>(c, 'Volume', 'vol-conflict')) as VolumeObject
          await c.custom.replaceClusterCustomObjectStatus({
            group: 'cairn.dev', version: 'v1alpha1', plural: 'volumes', name: 'vol-conflict',
            body: { ...theirs, status: { ...theirs.status, head: { rootCid: 'bafyhead', sizeBytes: 4096, journalSeq: 7 } } },
          })
          return true
        })
      }
      return original(kind, obj)
    }
    try {
      const result = await updateStatus<VolumeObject>(kube, 'Volume', 'vol-conflict', (fresh) => ({ ...fresh.status, allocatedBytes: 4096 }))
      assert.ok(writes >= 2, 'the first write conflicted and was retried from a fresh read')
      assert.equal(result?.status?.allocatedBytes, 4096)
      assert.deepEqual((result?.status as Record<string, unknown>)?.head, { rootCid: 'bafyhead', sizeBytes: 4096, journalSeq: 7 })
    } finally {
      kube.replaceCrStatus = original
    }
    // The operator's own Ready condition, written around the same time, survives too.
    await waitFor('operator condition', async () => (await getCr<VolumeObject>(c, 'Volume', 'vol-conflict'))?.status?.conditions !== undefined)
    const stored = await getCr<VolumeObject>(c, 'Volume', 'vol-conflict')
    assert.equal((stored?.status as Record<string, unknown>)?.allocatedBytes, 4096)
    assert.deepEqual((stored?.status as Record<string, unknown>)?.head, { rootCid: 'bafyhead', sizeBytes: 4096, journalSeq: 7 })
  })

  it('a failing reconcile is counted per kind and retried with backoff until it converges; durations and queue depth are exported per kind', async () => {
    const metric = async (name: string, kind: string): Promise<number | undefined> =>
      (await registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.kind === kind)?.value
    const errorsBefore = (await metric('cairn_operator_reconcile_errors_total', 'BlockStore')) ?? 0
    const key = storageNodeLabel('bs-flaky')
    const original = operator.kube.patchNodeLabels.bind(operator.kube)
    let refused = 0
    // The API server refuses this block store's first two label writes (as an overloaded one would).
    operator.kube.patchNodeLabels = async (name, labels) => {
      if (key in labels && refused < 2) {
        refused++
        throw new KubeApiError(503, `label node ${name}: HTTP 503 (injected)`)
      }
      return original(name, labels)
    }
    try {
      await createNode(c, 'f1', { labels: { 'cairn.dev/role': 'flaky' } })
      await createCr(c, 'BlockStore', 'bs-flaky', { nodeSelector: { matchLabels: { 'cairn.dev/role': 'flaky' } } })
      await waitFor('f1 labelled after the retries', async () => JSON.stringify(await labelled(key)) === '["f1"]')
    } finally {
      operator.kube.patchNodeLabels = original
    }
    assert.equal(refused, 2)
    assert.ok(((await metric('cairn_operator_reconcile_errors_total', 'BlockStore')) ?? 0) >= errorsBefore + 2, 'both failures counted under kind BlockStore')
    const durations = (await registry.getSingleMetric('cairn_operator_reconcile_duration_seconds')?.get())?.values ?? []
    for (const kind of ['BlockStore', 'StoragePolicy', 'Volume', 'Snapshot']) {
      const count = (durations as Array<{ labels: Record<string, unknown>; value: number; metricName?: string }>)
        .find((v) => v.labels.kind === kind && v.metricName === 'cairn_operator_reconcile_duration_seconds_count')?.value ?? 0
      assert.ok(count > 0, `reconcile durations of ${kind}`)
      assert.notEqual(await metric('cairn_operator_queue_depth', kind), undefined, `queue depth of ${kind}`)
    }
  })
})
