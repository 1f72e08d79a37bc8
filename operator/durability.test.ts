// The operator's side of the durability services against the test API server,
// with an injected clock, storage-node Stats answers from a test double (the
// real Stats RPC is covered by usage.test.ts) and a fake GC runner (the real
// one is engine/gc's): peer ids and mesh addresses published from Stats,
// members Down only after the timeout, Volume health with its Events, repair
// and scrub status, and the GC schedule.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { NAMESPACE, MERGE, createCr, createNode, getCr, startCluster, waitFor, type Cluster } from './test-support.js'
import { Operator } from './operator.js'
import { ownedLabels } from './storage-node-objects.js'
import type { GcReport } from './gc-schedule.js'
import type { UsageReport } from './usage-poller.js'
import type { BlockStoreObject, CrdMember, VolumeObject } from './types.js'

const BS = 'dur'
const GiB = 2 ** 30
const NODES = ['d1', 'd2', 'd3', 'd4']
const ipOf = (node: string): string => `10.1.0.${node.slice(1)}`

let c: Cluster
let operator: Operator
const registry = new Registry()
let clockMs = Date.now()
/** What each "storage node" answers to Stats, by pod IP. */
const answers = new Map<string, UsageReport>()
const gcCalls: Array<{ blockStore: string; gracePeriodMs: number }> = []
let gcOutcome: { release: (r: GcReport | Error) => void } | undefined

function answer(node: string, patch: Partial<UsageReport>): void {
  const ip = ipOf(node)
  answers.set(ip, { ...(answers.get(ip) as UsageReport), ...patch })
}

function repair(backlogShards: number, repairedShards = 0) {
  return { backlogShards, repairedShards, repairedBytes: repairedShards * 4096, movedShards: 1, movedBytes: 4096, passesCompleted: 1, lastPassCompletedUnixMs: Date.parse('2026-11-22T10:00:00Z') }
}

async function setPodReady(node: string, ready: boolean): Promise<void> {
  const status = { phase: 'Running', podIP: ipOf(node), conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] }
  await c.core.patchNamespacedPodStatus({ name: `storage-${node}`, namespace: NAMESPACE, body: { status } }, MERGE)
}

async function blockStore(): Promise<BlockStoreObject | undefined> {
  return getCr<BlockStoreObject>(c, 'BlockStore', BS)
}

async function members(): Promise<CrdMember[]> {
  return (await blockStore())?.status?.clusterMap?.members ?? []
}

/** Reconciles the block store now (after the pods cache has caught up) and waits for it to finish. */
async function reconcileAfter(seen: () => boolean): Promise<void> {
  const controllers = operator.current!
  await waitFor('the operator saw the pods', async () => seen())
  controllers.queues.BlockStore.add(BS)
  await controllers.queues.BlockStore.idle()
}

function podReadyInCache(node: string, ready: boolean): boolean {
  const pod = operator.current?.caches.pods.list().find((p) => p.metadata.name === `storage-${node}`)
  return pod?.status?.conditions?.[0]?.status === (ready ? 'True' : 'False')
}

before(async () => {
  c = await startCluster()
  for (const [i, n] of NODES.entries()) {
    await createNode(c, n, { labels: { 'cairn.dev/role': 'dur', 'topology.kubernetes.io/zone': `z${i + 1}` } })
    answers.set(ipOf(n), { capacityBytes: GiB, usedBytes: 0, scrub: { scrubbedShards: 10 * (i + 1), scrubbedBytes: 0, badShards: i === 0 ? 1 : 0, passesCompleted: 1, lastPassCompletedUnixMs: Date.parse(`2026-11-22T0${i}:00:00Z`) }, repair: repair(0) })
  }
  // d4 runs no mesh yet: no peer id in its answer.
  for (const n of NODES.slice(0, 3)) answer(n, { peerId: `12D3KooW${n}` })
  operator = new Operator(
    {
      namespace: NAMESPACE, identity: 'dur-operator', image: 'cairn:test', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200, backoffBaseMs: 20, backoffMaxMs: 500,
      watchTimeoutSeconds: 5, usagePollIntervalMs: 50, gcCheckIntervalMs: 50,
      gc: {
        run: (blockStore, options) => {
          gcCalls.push({ blockStore, gracePeriodMs: options.gracePeriodMs })
          return new Promise<GcReport>((resolve, reject) => (gcOutcome = { release: (r) => (r instanceof Error ? reject(r) : resolve(r)) }))
        },
      },
    },
    { kubeConfig: c.kc, logger: silentLogger(), registry, now: () => clockMs, statsDialer: async (address) => {
      const report = answers.get(address.slice(0, address.lastIndexOf(':')))
      if (report === undefined) throw new Error(`no storage node at ${address}`)
      return structuredClone(report)
    } },
  )
  await operator.start()
  await createCr(c, 'BlockStore', BS, { nodeSelector: { matchLabels: { 'cairn.dev/role': 'dur' } }, durability: { memberDownTimeoutSeconds: 120, gcIntervalSeconds: 600, gcGracePeriodSeconds: 900 } })
  for (const n of NODES) {
    await c.core.createNamespacedPod({ namespace: NAMESPACE, body: { metadata: { name: `storage-${n}`, labels: ownedLabels(BS) }, spec: { nodeName: n, containers: [{ name: 'storage-node', image: 'cairn:test' }] } } })
    await setPodReady(n, true)
  }
  await createCr(c, 'StoragePolicy', 'dur-2-1', { blockStore: BS, dataShards: 2, parityShards: 1 })
  await createCr(c, 'Volume', 'dvol', { blockStore: BS, storagePolicy: 'dur-2-1', sizeBytes: 1 << 20 })
})

after(async () => {
  gcOutcome?.release(new Error('test over'))
  await operator.stop()
  await c.close()
})

describe('durability in the operator', () => {
  it('publishes peer ids from Stats and mesh addresses; a peer id appearing moves the epoch by one', async () => {
    const up = await waitFor('four Up members, three with peer ids', async () => {
      const m = await members()
      return m.length === 4 && m.every((x) => x.state === 'Up') && m.filter((x) => x.peerId !== undefined).length === 3 ? m : undefined
    })
    assert.deepEqual(up.map((m) => [m.id, m.peerId, m.meshAddress, m.address]), [
      ['d1', '12D3KooWd1', '10.1.0.1:7800', '10.1.0.1:7700'],
      ['d2', '12D3KooWd2', '10.1.0.2:7800', '10.1.0.2:7700'],
      ['d3', '12D3KooWd3', '10.1.0.3:7800', '10.1.0.3:7700'],
      ['d4', undefined, '10.1.0.4:7800', '10.1.0.4:7700'],
    ])
    const epoch = (await blockStore())?.status?.clusterMap?.epoch ?? -1
    answer('d4', { peerId: '12D3KooWd4' })
    await waitFor('d4 peer id published', async () => (await members()).find((m) => m.id === 'd4')?.peerId === '12D3KooWd4')
    assert.equal((await blockStore())?.status?.clusterMap?.epoch, epoch + 1)
  })

  it('sums the nodes\' scrub and repair counters into BlockStore status', async () => {
    answer('d2', { repair: repair(0, 7) })
    const status = await waitFor('repair and scrub status', async () => {
      const st = (await blockStore())?.status
      return st?.repair?.repairedShards === 7 && st.scrub !== undefined ? st : undefined
    })
    assert.deepEqual(status.repair, { backlogShards: 0, repairedShards: 7, movedShards: 4, movedBytes: 4 * 4096, lastPassTime: '2026-11-22T10:00:00Z' })
    // The scrub time is the slowest node's last pass: d1's, at 00:00.
    assert.deepEqual(status.scrub, { scrubbedShards: 100, badShards: 1, lastPassTime: '2026-11-22T00:00:00Z' })
  })

  it('writes Volume health from members and backlog, marks members Down only after the timeout, with an Event per change', async () => {
    const health = async (): Promise<string | undefined> => (await getCr<VolumeObject>(c, 'Volume', 'dvol'))?.status?.health
    await waitFor('Healthy', async () => (await health()) === 'Healthy')
    answer('d3', { repair: repair(5) })
    await waitFor('Degraded by the backlog', async () => (await health()) === 'Degraded')
    const degraded = (await blockStore())?.status?.conditions?.find((x) => x.type === 'Degraded')
    assert.equal(degraded?.status, 'True')
    assert.equal(degraded?.reason, 'RepairBacklog')
    answer('d3', { repair: repair(0) })
    await waitFor('Healthy again', async () => (await health()) === 'Healthy')

    // d1 restarts: not ready, but within the timeout it stays Up and the volume Healthy.
    const epoch = (await blockStore())?.status?.clusterMap?.epoch
    await setPodReady('d1', false)
    await reconcileAfter(() => podReadyInCache('d1', false))
    assert.equal((await members()).find((m) => m.id === 'd1')?.state, 'Up')
    assert.equal((await blockStore())?.status?.clusterMap?.epoch, epoch, 'a restart within the timeout does not move the map')
    clockMs += 119_000
    await reconcileAfter(() => true)
    assert.equal((await members()).find((m) => m.id === 'd1')?.state, 'Up', 'one second before the timeout')
    clockMs += 1000
    await reconcileAfter(() => true)
    assert.equal((await members()).find((m) => m.id === 'd1')?.state, 'Down')
    await waitFor('Degraded by a Down member', async () => (await health()) === 'Degraded')

    // A second member Down: two lost shards per chunk are more than 2+1 tolerates.
    await setPodReady('d2', false)
    await reconcileAfter(() => podReadyInCache('d2', false))
    clockMs += 120_000
    await reconcileAfter(() => true)
    await waitFor('Unavailable', async () => (await health()) === 'Unavailable')

    for (const n of ['d1', 'd2']) await setPodReady(n, true)
    await waitFor('Healthy once both are back', async () => (await health()) === 'Healthy')
    assert.deepEqual((await members()).map((m) => m.state), ['Up', 'Up', 'Up', 'Up'])

    const events = (await c.core.listNamespacedEvent({ namespace: NAMESPACE })).items
    const volumeReasons = events.filter((e) => e.involvedObject.name === 'dvol').map((e) => e.reason)
    for (const reason of ['Healthy', 'Degraded', 'Unavailable']) assert.ok(volumeReasons.includes(reason), `an Event ${reason}: ${volumeReasons.join(',')}`)
    const bsReasons = events.filter((e) => e.involvedObject.name === BS).map((e) => e.reason)
    assert.equal(bsReasons.filter((r) => r === 'MemberDown').length, 2)
    assert.equal(bsReasons.filter((r) => r === 'MemberUp').length, 2)
  })

  it('runs GC once per interval, never two at once, and records each outcome in status and metrics', async () => {
    const gc = operator.current!.gc!
    assert.equal(gcCalls.length, 0, 'not due before gcIntervalSeconds after creation')
    const created = Date.parse((await blockStore())?.metadata.creationTimestamp ?? '')
    clockMs = Math.max(clockMs, created + 600_000)
    await waitFor('a run started', async () => gcCalls.length === 1)
    assert.deepEqual(gcCalls[0], { blockStore: BS, gracePeriodMs: 900_000 })
    clockMs += 3_600_000 // long overdue while running: still one at a time
    assert.deepEqual(gc.runDue(), [])
    assert.deepEqual(gc.inFlight(), [BS])
    assert.equal(gcCalls.length, 1)
    const firstRunMs = clockMs
    gcOutcome?.release({ markedChunks: 10, sweptShards: 3, freedBytes: 12_288, durationMs: 40, collectedJournals: 2 })
    const done = await waitFor('success recorded', async () => {
      const st = (await blockStore())?.status?.gc
      return st?.lastOutcome === 'Succeeded' ? st : undefined
    })
    assert.equal(done.lastFreedBytes, 12_288)
    assert.ok(Date.parse(done.lastRunTime ?? '') <= firstRunMs)
    // The next run comes an interval after this one, and this one fails.
    clockMs = Date.parse(done.lastRunTime ?? '') + 599_000
    await new Promise<void>((resolve) => setImmediate(resolve))
    assert.deepEqual(gc.runDue(), [], 'not due yet')
    clockMs += 1000
    await waitFor('second run', async () => gcCalls.length === 2)
    gcOutcome?.release(Object.assign(new Error('storage node d3 unreachable'), { name: 'UnavailableError' }))
    const failed = await waitFor('failure recorded', async () => {
      const st = (await blockStore())?.status?.gc
      return st?.lastOutcome === 'Failed' ? st : undefined
    })
    assert.equal(failed.lastFreedBytes, 12_288, 'the last freed bytes stay those of the last success')
    const metric = await registry.getSingleMetricAsString('cairn_operator_gc_runs_total')
    assert.match(metric, /cairn_operator_gc_runs_total\{outcome="succeeded"\} 1/)
    assert.match(metric, /cairn_operator_gc_runs_total\{outcome="failed"\} 1/)
    const events = (await c.core.listNamespacedEvent({ namespace: NAMESPACE })).items.filter((e) => e.involvedObject.name === BS)
    const reasons = events.map((e) => e.reason)
    assert.ok(reasons.includes('GarbageCollected') && reasons.includes('GarbageCollectionFailed'))
    assert.match(events.find((e) => e.reason === 'GarbageCollected')?.message ?? '', /3 shards swept, 10 chunks marked, 2 journal replicas collected/)
  })
})
