/**
 * A volume engine in a cluster, as the CSI node plugin starts it there: `cairn engine
 * --control-plane kubernetes` against the test API server (test infrastructure standing
 * in for kube-apiserver), reading its block store's cluster token from the Secret in
 * CAIRN_NAMESPACE, writing to storage nodes that require that token. Real nbdcopy I/O.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoreV1Api } from '@kubernetes/client-node'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { clusterTokenSecretName } from '../control-plane/kubernetes/constants.js'
import { startTestCluster, type TestCluster } from '../control-plane/kubernetes/test-support.js'
import type { KubernetesControlPlane } from '../control-plane/kubernetes/kubernetes-control-plane.js'
import { StorageNode } from '../storage-node/daemon.js'
import { loopbackNodeInit } from '../storage-node/fixtures.js'
import { startEngine, stopEngine, type EngineLaunchInit } from '../csi-driver/attach/engine-process.js'
import { runOk } from '../engine/nbd/testing.js'
import { CLI_MAIN, MiB, patterned } from './harness.js'

const TOKEN = 'kubernetes-engine-test-token-0123456789'
const NAMESPACE = 'cairn-system'

let cluster: TestCluster
let cp: KubernetesControlPlane
let work: string
const nodes: StorageNode[] = []

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-engine-k8s-'))
  cluster = await startTestCluster()
  cp = await cluster.controlPlane()
  for (let i = 0; i < 3; i++) {
    const node = new StorageNode(loopbackNodeInit(join(work, `node-${i}`), { clusterToken: TOKEN }), { logger: silentLogger(), registry: new Registry() })
    await node.start()
    nodes.push(node)
  }
  await cp.createBlockStore({ name: 'default', hostPath: '/var/lib/cairn' })
  await cp.createStoragePolicy({ name: 'ec-2-1', dataShards: 2, parityShards: 1, journalReplicas: 2 })
  await cp.publishClusterMap('default', {
    epoch: 1,
    members: nodes.map((n, i) => ({ id: `node-${i}`, address: n.grpcAddress(), peerId: `peer-${i}`, failureDomain: `zone-${i}`, weight: 1, state: 'active' as const })),
  })
  const core = cluster.kubeConfig().makeApiClient(CoreV1Api)
  await core.createNamespace({ body: { metadata: { name: NAMESPACE } } })
  await core.createNamespacedSecret({
    namespace: NAMESPACE,
    body: { metadata: { name: clusterTokenSecretName('default'), namespace: NAMESPACE }, data: { token: Buffer.from(TOKEN).toString('base64') } },
  })
})

after(async () => {
  for (const node of nodes) await node.stop().catch(() => undefined)
  await cp?.stop().catch(() => undefined)
  await cluster?.stop().catch(() => undefined)
  await rm(work, { recursive: true, force: true })
})

test('an engine on the Kubernetes control plane attaches through the CRDs, authenticates with the Secret token, and keeps the data', async () => {
  await cp.createVolume({ name: 'kvol', blockStore: 'default', storagePolicy: 'ec-2-1', sizeBytes: 16 * MiB })
  const launch: EngineLaunchInit = { argsPrefix: [CLI_MAIN], dataDir: join(work, 'engine-data'), nodeId: 'node-k', blockStore: 'default', logLevel: 'warn', controlPlane: 'kubernetes', kubeconfig: cluster.kubeconfigPath }
  const volumeDir = join(work, 'kvol')
  await runOk('mkdir', ['-p', volumeDir, launch.dataDir])
  // The node plugin's container sets CAIRN_NAMESPACE; its engines inherit it.
  process.env.CAIRN_NAMESPACE = NAMESPACE
  const data = patterned(4 * MiB, 77)
  const input = join(work, 'in.bin')
  const output = join(work, 'out.bin')
  await writeFile(input, data)
  const engine = await startEngine(launch, 'kvol', volumeDir)
  try {
    const uri = `nbd+unix:///kvol?socket=${engine.socketPath}`
    await runOk('nbdcopy', ['--flush', input, uri])
    assert.equal((await cp.getVolume('kvol')).status.attachment?.nodeId, 'node-k', 'the attachment is recorded in the Volume CR')
  } finally {
    await stopEngine(engine.socketPath)
  }
  // The engine's final flush put shards on the token-protected nodes and the head in the CR.
  const shards = await Promise.all(nodes.map(async (n) => (await n.store.stats()).shardCount))
  assert.ok(shards.every((count) => count > 0), `every node holds shards: ${shards.join(', ')}`)
  assert.notEqual((await cp.getVolume('kvol')).status.head?.rootCid ?? null, null)
  // A second engine incarnation reads back every byte.
  const again = await startEngine(launch, 'kvol', volumeDir)
  try {
    await runOk('nbdcopy', [`nbd+unix:///kvol?socket=${again.socketPath}`, output])
    assert.ok((await readFile(output)).subarray(0, data.length).equals(data), 'the data read back equals what was written')
  } finally {
    await stopEngine(again.socketPath)
  }
})
