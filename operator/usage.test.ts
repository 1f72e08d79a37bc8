// The operator against the test API server and three real storage nodes: member
// addresses come from the pods' IPs (set by the test, as a kubelet would), state
// follows pod readiness, and weights, capacity and usage come from each node's
// own Stats answer over gRPC, authenticated with the block store's cluster token.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { loadConfig, storageNodeConfigSchema } from '../core/config.js'
import { silentLogger } from '../core/logger.js'
import { StorageNode } from '../storage-node/daemon.js'
import { fixtureShard } from '../storage-node/fixtures.js'
import { ShardClient } from '../storage-node/shard-client.js'
import { ownedNames } from './constants.js'
import { Operator } from './operator.js'
import { desiredDaemonSet, ownedLabels } from './storage-node-objects.js'
import { MERGE, NAMESPACE, createCr, createNode, getCr, optional, startCluster, waitFor, type Cluster } from './test-support.js'
import type { BlockStoreObject, CrdMember } from './types.js'

const MiB = 2 ** 20
const BS = 'bs-usage'
// Each "pod" gets its own loopback address, so every node listens on the real gRPC port as pods do.
const NODES = [
  { name: 'u1', ip: '127.77.0.1', capacityBytes: 100 * MiB },
  { name: 'u2', ip: '127.77.0.2', capacityBytes: 200 * MiB },
  { name: 'u3', ip: '127.77.0.3', capacityBytes: 300 * MiB },
]

let c: Cluster
let operator: Operator
let dataDir: string
let token: string
/** The operator's clock: member down timeouts are judged by it. */
let clockMs = Date.now()
const storageNodes: StorageNode[] = []

async function members(): Promise<CrdMember[]> {
  return (await getCr<BlockStoreObject>(c, 'BlockStore', BS))?.status?.clusterMap?.members ?? []
}

async function setPodStatus(name: string, ip: string | undefined, ready: boolean): Promise<void> {
  const status = { phase: 'Running', ...(ip === undefined ? {} : { podIP: ip }), conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] }
  await c.core.patchNamespacedPodStatus({ name, namespace: NAMESPACE, body: { status } }, MERGE)
}

before(async () => {
  c = await startCluster()
  dataDir = await mkdtemp(join(tmpdir(), 'cairn-usage-'))
  for (const n of NODES) await createNode(c, n.name, { labels: { 'cairn.dev/role': 'usage' } })
  operator = new Operator(
    { namespace: NAMESPACE, identity: 'usage-operator', image: 'cairn:test', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200, backoffBaseMs: 20, backoffMaxMs: 500, watchTimeoutSeconds: 5, usagePollIntervalMs: 100 },
    { kubeConfig: c.kc, logger: silentLogger(), registry: new Registry(), now: () => clockMs },
  )
  await operator.start()
  await createCr(c, 'BlockStore', BS, { nodeSelector: { matchLabels: { 'cairn.dev/role': 'usage' } } })
  const secret = await waitFor('cluster token Secret', () => optional(c.core.readNamespacedSecret({ name: ownedNames(BS).secret, namespace: NAMESPACE })))
  token = Buffer.from(secret.data?.token ?? '', 'base64').toString('utf8')
})

after(async () => {
  await operator.stop()
  for (const n of storageNodes) await n.stop()
  await c.close()
  await rm(dataDir, { recursive: true, force: true })
})

describe('storage-node membership and usage', () => {
  it('the DaemonSet environment configures the storage node: capacity rule and cluster token names match core/config.ts', async () => {
    const bs = (await getCr<BlockStoreObject>(c, 'BlockStore', BS)) as BlockStoreObject
    const spec = { ...bs, spec: { ...bs.spec, capacity: { fraction: 0.5, minBytes: 10 * MiB, maxBytes: 900 * MiB } } }
    const ds = desiredDaemonSet(spec, NAMESPACE, 'cairn:test') as { spec: { template: { spec: { containers: Array<{ args: string[]; env: Array<{ name: string; value?: string }> }> } } } }
    const container = ds.spec.template.spec.containers[0]!
    // The kubelet resolves the Secret reference; here the token stands in for it.
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value ?? (e.name === 'CAIRN_CLUSTER_TOKEN' ? token : e.name === 'CAIRN_NODE_NAME' ? 'u1' : 'x')]))
    // The kubelet expands $(VAR) in args from the container's environment.
    const args = container.args.slice(1).map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_m, name: string) => env[name] ?? ''))
    const config = loadConfig(storageNodeConfigSchema, args, env)
    assert.equal(config.capacityFraction, 0.5)
    assert.equal(config.capacityMinBytes, 10 * MiB)
    assert.equal(config.capacityMaxBytes, 900 * MiB)
    assert.equal(config.clusterToken, token)
    assert.equal(config.listen, '0.0.0.0:7700')
    // The durability services: member id = node name (the id the operator publishes), pacing from spec.durability defaults.
    assert.equal(config.memberId, 'u1')
    assert.equal(config.blockStore, BS)
    assert.equal(config.meshListen, '0.0.0.0:7800')
    assert.equal(config.controlPlane, 'kubernetes')
    assert.equal(config.scrubBytesPerSecond, 8 * MiB)
    assert.equal(config.scrubInterval, '86400s')
    assert.equal(config.repairBandwidthBytesPerSecond, 64 * MiB)
    assert.equal(config.repairInterval, '60s')
  })

  it('publishes pod IPs as addresses, Up only for ready pods, and each node reported allocation and usage', async () => {
    // No pods yet: every member is Joining (it never served, so it holds nothing to rebuild).
    await waitFor('three Joining members', async () => {
      const m = await members()
      return m.length === 3 && m.every((x) => x.state === 'Joining')
    })
    for (const n of NODES) {
      const node = new StorageNode(
        {
          dataDir: join(dataDir, n.name), listen: `${n.ip}:7700`, metricsListen: '127.0.0.1:0', segmentSizeBytes: 4 * MiB, compactionLiveRatio: 0.5, compactionIntervalMs: 0,
          maxBatchShards: 64, maxBatchBytes: 4 * MiB, maxShardBytes: MiB, maxInFlightRequests: 16, pendingMaxBytes: 16 * MiB, shutdownGraceMs: 1000,
          clusterToken: token, capacityFraction: 1, capacityMaxBytes: n.capacityBytes,
        },
        { logger: silentLogger(), registry: new Registry() },
      )
      await node.start()
      storageNodes.push(node)
      await c.core.createNamespacedPod({
        namespace: NAMESPACE,
        body: { metadata: { name: `storage-${n.name}`, labels: ownedLabels(BS) }, spec: { nodeName: n.name, containers: [{ name: 'storage-node', image: 'cairn:test' }] } },
      })
      await setPodStatus(`storage-${n.name}`, n.ip, true)
    }
    const up = await waitFor('three Up members weighted by their reports', async () => {
      const m = await members()
      return m.length === 3 && m.every((x, i) => x.state === 'Up' && x.weightBytes === NODES[i]!.capacityBytes) ? m : undefined
    })
    assert.deepEqual(up.map((m) => m.address), ['127.77.0.1:7700', '127.77.0.2:7700', '127.77.0.3:7700'])

    // Usage: shards put on u2 (with the token) show up in the block store's status.
    const client = new ShardClient({ address: '127.77.0.2:7700', token, deadlineMs: 5000 })
    const shards = Array.from({ length: 4 }, (_, i) => fixtureShard(900 + i, 0, 8192))
    await client.putShards(shards)
    client.close()
    const used = shards.reduce((sum, s) => sum + s.bytes.byteLength, 0)
    const status = await waitFor('usage reported', async () => {
      const st = (await getCr<BlockStoreObject>(c, 'BlockStore', BS))?.status
      return st?.usedBytes === used ? st : undefined
    })
    assert.equal(status.capacityBytes, 600 * MiB)
  })

  it('marks a member Down only after the down timeout when its pod turns unready or goes, keeping its address, and Up again once ready', async () => {
    const epochBefore = (await getCr<BlockStoreObject>(c, 'BlockStore', BS))?.status?.clusterMap?.epoch ?? 0
    await setPodStatus('storage-u1', '127.77.0.1', false)
    await c.core.deleteNamespacedPod({ name: 'storage-u3', namespace: NAMESPACE })
    // Once the operator has seen both pods out and reconciled, they are still Up: a restart is not a loss.
    const controllers = operator.current!
    await waitFor('pods seen out', async () => {
      const pods = controllers.caches.pods.list()
      return !pods.some((p) => p.metadata.name === 'storage-u3') && pods.some((p) => p.metadata.name === 'storage-u1' && p.status?.conditions?.[0]?.status === 'False')
    })
    controllers.queues.BlockStore.add(BS)
    await controllers.queues.BlockStore.idle()
    assert.deepEqual((await members()).map((m) => m.state), ['Up', 'Up', 'Up'], 'within the timeout nothing is Down')
    assert.equal((await getCr<BlockStoreObject>(c, 'BlockStore', BS))?.status?.clusterMap?.epoch, epochBefore, 'and the map did not move')
    clockMs += 600_000 // the default memberDownTimeoutSeconds
    controllers.queues.BlockStore.add(BS)
    const down = await waitFor('u1 and u3 Down', async () => {
      const m = await members()
      return m.find((x) => x.id === 'u1')?.state === 'Down' && m.find((x) => x.id === 'u3')?.state === 'Down' ? m : undefined
    })
    assert.equal(down.find((x) => x.id === 'u3')?.address, '127.77.0.3:7700')
    assert.equal(down.find((x) => x.id === 'u3')?.weightBytes, 300 * MiB, 'the reported weight stays while the node is away')
    assert.equal(down.find((x) => x.id === 'u2')?.state, 'Up')
    await setPodStatus('storage-u1', '127.77.0.1', true)
    await waitFor('u1 Up again', async () => (await members()).find((x) => x.id === 'u1')?.state === 'Up')
    const epochAfter = (await getCr<BlockStoreObject>(c, 'BlockStore', BS))?.status?.clusterMap?.epoch ?? 0
    assert.ok(epochAfter > epochBefore, 'state changes are membership changes')
  })
})
