// Kubernetes-specific behaviour of the Kubernetes ControlPlane, against the test API
// server: races between separate clients, fields the operator owns surviving Cairn's
// writes, schema refusals, hand-edited objects, finalizers and start-up checks.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node'
import { silentLogger } from '../../core/logger.js'
import { TestApiServer } from '../../e2e/test-apiserver/index.js'
import type { ControlPlane } from '../types.js'
import { GROUP, PLURAL, VERSION, VOLUME_FINALIZER, SNAPSHOT_FINALIZER, IN_USE_FINALIZER } from './constants.js'
import { KubernetesApiError } from './errors.js'
import { createKubernetesControlPlane } from './kubernetes-control-plane.js'
import { startTestCluster, type TestCluster } from './test-support.js'

const MiB = 1024 * 1024
type Raw = { metadata: { name: string; resourceVersion: string; finalizers?: string[]; deletionTimestamp?: string }; spec: Record<string, unknown>; status?: Record<string, unknown> }

let cluster: TestCluster
let raw: CustomObjectsApi
before(async () => {
  cluster = await startTestCluster()
  raw = cluster.kubeConfig().makeApiClient(CustomObjectsApi)
})
after(() => cluster.stop())

const ref = (plural: string, name: string) => ({ group: GROUP, version: VERSION, plural, name })
const getRaw = async (plural: string, name: string) => (await raw.getClusterCustomObject(ref(plural, name))) as Raw

/** What an operator does: read, change status, write with the read resourceVersion, again on 409. */
async function operatorStatusWrite(plural: string, name: string, change: (status: Record<string, unknown>) => void): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const obj = await getRaw(plural, name)
    const status = { ...(obj.status ?? {}) }
    change(status)
    try {
      await raw.replaceClusterCustomObjectStatus({ ...ref(plural, name), body: { ...obj, status } })
      return
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err
    }
  }
  assert.fail('operator write kept conflicting')
}

/** A fresh block store + policy, under names unique to the calling test. */
async function seed(cp: ControlPlane, prefix: string): Promise<{ bs: string; policy: string }> {
  const bs = `${prefix}-bs`
  const policy = `${prefix}-p`
  await cp.createBlockStore({ name: bs, hostPath: '/data' })
  await cp.createStoragePolicy({ name: policy, dataShards: 2, parityShards: 1 })
  return { bs, policy }
}

describe('kubernetes control plane: concurrency', () => {
  it('two clients racing acquireEpoch: exactly one wins each round and epochs strictly increase', async () => {
    const a = await cluster.controlPlane()
    const b = await cluster.controlPlane()
    const { bs, policy } = await seed(a, 'race')
    await a.createVolume({ name: 'race-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    let epoch = 0
    for (let round = 0; round < 25; round++) {
      const results = await Promise.allSettled([a.acquireEpoch('race-v', 'node-a', epoch), b.acquireEpoch('race-v', 'node-b', epoch)])
      const won = results.filter((r) => r.status === 'fulfilled')
      assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.status))}`)
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      assert.equal((lost.reason as Error).name, 'ConflictError', `round ${round}`)
      const granted = (won[0] as PromiseFulfilledResult<{ status: { epoch: number } }>).value.status.epoch
      assert.ok(granted > epoch, `round ${round}: ${granted} > ${epoch}`)
      epoch = granted
    }
    assert.equal((await b.getVolume('race-v')).status.epoch, epoch)
    await a.stop()
    await b.stop()
  })

  it('a stale writer cannot move an epoch back: neither a replayed status write nor a stale acquire', async () => {
    const cp = await cluster.controlPlane()
    const { bs, policy } = await seed(cp, 'stale')
    await cp.createVolume({ name: 'stale-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    await cp.acquireEpoch('stale-v', 'node-a', 0)
    const old = await getRaw(PLURAL.Volume, 'stale-v')
    const current = await cp.acquireEpoch('stale-v', 'node-b', 1)
    await assert.rejects(raw.replaceClusterCustomObjectStatus({ ...ref(PLURAL.Volume, 'stale-v'), body: old }), { code: 409 })
    await assert.rejects(cp.acquireEpoch('stale-v', 'node-a', 1), { name: 'ConflictError' })
    assert.deepEqual(await cp.getVolume('stale-v'), current)
    await cp.stop()
  })

  it('collisions with unrelated writers are retried and no side loses a field', async () => {
    const a = await cluster.controlPlane()
    const b = await cluster.controlPlane()
    const { bs, policy } = await seed(a, 'merge')
    await a.createVolume({ name: 'merge-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    let epoch = 0
    for (let round = 1; round <= 10; round++) {
      const [acquired] = await Promise.all([
        a.acquireEpoch('merge-v', 'node-a', epoch),
        b.resizeVolume('merge-v', (1 + round) * MiB),
        operatorStatusWrite(PLURAL.Volume, 'merge-v', (s) => {
          s.conditions = [{ type: 'Ready', status: 'True', reason: `Round${round}`, lastTransitionTime: '2026-01-01T00:00:00Z' }]
        }),
      ])
      assert.ok(acquired.status.epoch > epoch)
      epoch = acquired.status.epoch
      const stored = await getRaw(PLURAL.Volume, 'merge-v')
      assert.equal(stored.spec.sizeBytes, (1 + round) * MiB, `round ${round}: the resize survived`)
      assert.equal((stored.status?.attachment as { epoch: number }).epoch, epoch, `round ${round}: the epoch survived`)
      assert.equal((stored.status?.conditions as { reason: string }[])[0]!.reason, `Round${round}`, `round ${round}: the condition survived`)
    }
    await a.stop()
    await b.stop()
  })

  it("publishing a cluster map keeps the operator's BlockStore status fields", async () => {
    const cp = await cluster.controlPlane()
    await cp.createBlockStore({ name: 'keep-bs', hostPath: '/data' })
    await operatorStatusWrite(PLURAL.BlockStore, 'keep-bs', (s) => {
      s.readyNodes = 3
      s.capacityBytes = 1 << 30
    })
    const member = { id: 'n1', address: '10.0.0.1:7700', peerId: 'p1', failureDomain: 'z1', weight: 0.75, state: 'active' as const }
    await Promise.all([
      cp.publishClusterMap('keep-bs', { epoch: 1, members: [member] }),
      operatorStatusWrite(PLURAL.BlockStore, 'keep-bs', (s) => (s.usedBytes = 42)),
    ])
    const stored = await getRaw(PLURAL.BlockStore, 'keep-bs')
    assert.deepEqual([stored.status?.readyNodes, stored.status?.capacityBytes, stored.status?.usedBytes], [3, 1 << 30, 42])
    assert.deepEqual((stored.status?.clusterMap as { members: unknown[] }).members, [
      { id: 'n1', node: 'n1', address: '10.0.0.1:7700', peerId: 'p1', failureDomain: 'z1', weightBytes: 0.75 * 2 ** 30, state: 'Up' },
    ])
    assert.deepEqual(await cp.getClusterMap('keep-bs'), { epoch: 1, members: [member] })
    await cp.stop()
  })
})

describe('kubernetes control plane: what the API server refuses and what it holds', () => {
  it("an object the CRD schema refuses is InvalidArgumentError carrying the server's Status", async () => {
    const cp = await cluster.controlPlane()
    // The domain rules allow 5 journal replicas; the CRD's CEL rule caps them at k + m.
    const err = await cp.createStoragePolicy({ name: 'too-many-journals', dataShards: 1, parityShards: 0, journalReplicas: 5 }).then(
      () => assert.fail('the API server accepted it'),
      (e: unknown) => e as Error & { cause?: unknown },
    )
    assert.equal(err.name, 'InvalidArgumentError')
    assert.ok(err.cause instanceof KubernetesApiError)
    assert.equal(err.cause.code, 422)
    assert.equal(err.cause.reason, 'Invalid')
    assert.deepEqual(err.cause.causes.map((c) => c.field), ['spec.journalReplicas'])
    assert.equal(err.message, err.cause.message, "the server's message is the error's")
    await assert.rejects(cp.getStoragePolicy('too-many-journals'), { name: 'NotFoundError' })
    await cp.stop()
  })

  it('hand-edited garbage in a status is MalformedObjectError naming the object, and nothing is written', async () => {
    const cp = await cluster.controlPlane()
    const { bs, policy } = await seed(cp, 'garbage')
    await cp.createVolume({ name: 'garbage-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    const edits: [string, (s: Record<string, unknown>) => void][] = [
      ['root not a CID', (s) => ((s.head as Record<string, unknown>).rootCid = 'not-a-cid')],
      ['attachment epoch disagrees', (s) => (s.attachment = { node: 'node-a', epoch: 7, since: '2026-01-01T00:00:00Z' })],
      ['head without sizeBytes', (s) => (s.head = { journalSeq: 1 })],
      ['epoch without head', (s) => delete s.head],
      ['journal replica not a name', (s) => (s.journalReplicas = ['Not A Node'])],
    ]
    for (const [why, edit] of edits) {
      await operatorStatusWrite(PLURAL.Volume, 'garbage-v', (s) => {
        Object.assign(s, { head: { sizeBytes: MiB, journalSeq: 0 }, epoch: 0, health: 'Unknown' })
        delete s.attachment
        delete s.journalReplicas
        edit(s)
      })
      const before = await getRaw(PLURAL.Volume, 'garbage-v')
      await assert.rejects(cp.getVolume('garbage-v'), { name: 'MalformedObjectError', kind: 'failed-precondition', resourceName: 'garbage-v' }, why)
      await assert.rejects(cp.listVolumes(), { name: 'MalformedObjectError' }, why)
      await assert.rejects(cp.acquireEpoch('garbage-v', 'node-b', 0), { name: 'MalformedObjectError' }, why)
      assert.equal((await getRaw(PLURAL.Volume, 'garbage-v')).metadata.resourceVersion, before.metadata.resourceVersion, why)
    }
    // Repaired by hand, it reads again (and stops breaking the lists of the other tests on this server).
    await operatorStatusWrite(PLURAL.Volume, 'garbage-v', (s) => {
      delete s.attachment
      Object.assign(s, { head: { sizeBytes: MiB, journalSeq: 0 }, epoch: 0, journalReplicas: [] })
    })
    assert.equal((await cp.getVolume('garbage-v')).status.epoch, 0)
    await cp.stop()
  })

  it('a snapshot made by hand without its annotations is MalformedObjectError', async () => {
    const cp = await cluster.controlPlane()
    await raw.createClusterCustomObject({
      group: GROUP, version: VERSION, plural: PLURAL.Snapshot,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Snapshot', metadata: { name: 'by-hand' }, spec: { volume: 'x' } },
    })
    await assert.rejects(cp.getSnapshot('by-hand'), { name: 'MalformedObjectError' })
    await cp.stop()
  })

  it('snapshots of a volume with a name longer than a label value are still listed by volume', async () => {
    const cp = await cluster.controlPlane()
    const { bs, policy } = await seed(cp, 'long')
    const longName = `long-${'x'.repeat(90)}`
    await cp.createVolume({ name: longName, blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    await cp.createVolume({ name: 'long-short', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    await cp.createSnapshot({ name: 'long-s1', volume: longName })
    await cp.createSnapshot({ name: 'long-s2', volume: 'long-short' })
    assert.deepEqual((await cp.listSnapshots({ volume: longName })).items.map((s) => s.name), ['long-s1'])
    await cp.stop()
  })
})

describe('kubernetes control plane: finalizers', () => {
  it('created objects carry their finalizers; a volume without journal replicas goes at once', async () => {
    const cp = await cluster.controlPlane()
    const { bs, policy } = await seed(cp, 'fin')
    await cp.createVolume({ name: 'fin-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    await cp.createSnapshot({ name: 'fin-s', volume: 'fin-v' })
    assert.deepEqual((await getRaw(PLURAL.Volume, 'fin-v')).metadata.finalizers, [VOLUME_FINALIZER])
    assert.deepEqual((await getRaw(PLURAL.Snapshot, 'fin-s')).metadata.finalizers, [SNAPSHOT_FINALIZER])
    assert.deepEqual((await getRaw(PLURAL.BlockStore, bs)).metadata.finalizers, [IN_USE_FINALIZER])
    await cp.deleteSnapshot('fin-s')
    await cp.deleteVolume('fin-v')
    await assert.rejects(raw.getClusterCustomObject(ref(PLURAL.Volume, 'fin-v')), { code: 404 })
    await assert.rejects(raw.getClusterCustomObject(ref(PLURAL.Snapshot, 'fin-s')), { code: 404 })
    await cp.stop()
  })

  it('a volume with journal replicas waits for the operator; meanwhile it is gone for callers and its name is busy', async () => {
    const cp = await cluster.controlPlane()
    const { bs, policy } = await seed(cp, 'journal')
    const spec = { name: 'journal-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB }
    const v = await cp.createVolume(spec)
    await cp.updateVolumeStatus('journal-v', v.revision, { journalReplicas: ['node-a', 'node-b'] })
    await cp.deleteVolume('journal-v')
    const waiting = await getRaw(PLURAL.Volume, 'journal-v')
    assert.ok(waiting.metadata.deletionTimestamp !== undefined)
    assert.deepEqual(waiting.metadata.finalizers, [VOLUME_FINALIZER])
    await assert.rejects(cp.getVolume('journal-v'), { name: 'NotFoundError' })
    assert.ok(!(await cp.listVolumes()).items.some((x) => x.name === 'journal-v'))
    await assert.rejects(cp.acquireEpoch('journal-v', 'node-a', 0), { name: 'NotFoundError' })
    await assert.rejects(cp.createVolume(spec), { name: 'FailedPreconditionError' })
    await assert.rejects(cp.deleteBlockStore(bs), { name: 'FailedPreconditionError' }, 'its cleanup still needs the block store')
    // The operator drops the journal, then its finalizer.
    await raw.replaceClusterCustomObject({ ...ref(PLURAL.Volume, 'journal-v'), body: { ...waiting, metadata: { ...waiting.metadata, finalizers: [] } } })
    const again = await cp.createVolume(spec)
    assert.notEqual(again.uid, v.uid)
    await cp.stop()
  })

  it('a block store being deleted refuses new volumes, and its delete completes once its last user goes', async () => {
    const cp = await cluster.controlPlane()
    const { bs, policy } = await seed(cp, 'inuse')
    await cp.createVolume({ name: 'inuse-v', blockStore: bs, storagePolicy: policy, sizeBytes: MiB })
    // kubectl delete: the in-use finalizer holds the object while a volume uses it.
    await raw.deleteClusterCustomObject(ref(PLURAL.BlockStore, bs))
    await assert.rejects(cp.getBlockStore(bs), { name: 'NotFoundError' })
    await assert.rejects(cp.createVolume({ name: 'inuse-w', blockStore: bs, storagePolicy: policy, sizeBytes: MiB }), { name: 'NotFoundError' })
    await assert.rejects(cp.deleteBlockStore(bs), { name: 'FailedPreconditionError' })
    await cp.deleteVolume('inuse-v')
    await cp.deleteBlockStore(bs)
    await assert.rejects(raw.getClusterCustomObject(ref(PLURAL.BlockStore, bs)), { code: 404 })
    await cp.stop()
  })
})

describe('kubernetes control plane: start-up and transport errors', () => {
  it('start fails with FailedPreconditionError when the CRDs are not installed', async () => {
    const bare = new TestApiServer()
    await bare.start()
    try {
      const kc = new KubeConfig()
      kc.loadFromString(bare.kubeconfig())
      const cp = createKubernetesControlPlane({ kubeConfig: kc }, { logger: silentLogger() })
      await assert.rejects(cp.start(), { name: 'FailedPreconditionError' })
    } finally {
      await bare.stop()
    }
  })

  it('an API server that never answers is KubernetesUnavailableError once the request deadline passes', async () => {
    const sockets = new Set<Socket>()
    const silent = createServer((socket) => sockets.add(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    try {
      const kc = new KubeConfig()
      const port = (silent.address() as AddressInfo).port
      kc.loadFromString(cluster.server.kubeconfig().replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`))
      const cp = createKubernetesControlPlane({ kubeConfig: kc, requestTimeoutMs: 200 }, { logger: silentLogger() })
      await assert.rejects(cp.start(), { name: 'KubernetesUnavailableError', kind: 'unavailable' })
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => silent.close(resolve))
    }
  })

  it('an unreachable API server is KubernetesUnavailableError (kind unavailable)', async () => {
    const gone = new TestApiServer()
    await gone.start()
    const kc = new KubeConfig()
    kc.loadFromString(gone.kubeconfig())
    await gone.stop()
    const cp = createKubernetesControlPlane({ kubeConfig: kc }, { logger: silentLogger() })
    await assert.rejects(cp.start(), { name: 'KubernetesUnavailableError', kind: 'unavailable' })
  })
})
