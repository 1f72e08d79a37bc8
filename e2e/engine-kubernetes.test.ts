/**
 * A volume engine in a cluster, as the CSI node plugin starts it there: `cairn engine
 * --control-plane kubernetes` against the test API server (test infrastructure standing
 * in for kube-apiserver), reading its block store's cluster token from the Secret in
 * CAIRN_NAMESPACE, writing to storage nodes that require that token. Real nbdcopy I/O.
 * And a controller snapshotting such an attached volume: it finds the node plugin pod
 * on the attachment's node and checkpoints the engine through the plugin's admin API.
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
import { AdminVolumeEngines } from '../csi-driver/engines.js'
import { mountNodeAdminApi } from '../csi-driver/node-admin.js'
import { kubernetesEngineLocator } from '../csi-driver/node-directory.js'
import { NodeStateStore } from '../csi-driver/state.js'
import { cachedClusterToken } from '../control-plane/kubernetes/cluster-token.js'
import { HealthServer } from '../core/health-server.js'
import { tokenVerifier } from '../storage-node/auth.js'
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

test('a controller checkpoints an attached volume through the node plugin admin API before a snapshot; the snapshot holds every acknowledged write', async () => {
  await cp.createVolume({ name: 'snapv', blockStore: 'default', storagePolicy: 'ec-2-1', sizeBytes: 16 * MiB })
  const launch: EngineLaunchInit = { argsPrefix: [CLI_MAIN], dataDir: join(work, 'engine-data'), nodeId: 'node-s', blockStore: 'default', logLevel: 'warn', controlPlane: 'kubernetes', kubeconfig: cluster.kubeconfigPath }
  await runOk('mkdir', ['-p', join(work, 'snapv'), join(work, 'restored'), launch.dataDir])
  process.env.CAIRN_NAMESPACE = NAMESPACE
  const data = patterned(3 * MiB, 78)
  await writeFile(join(work, 'snap-in.bin'), data)
  const engine = await startEngine(launch, 'snapv', join(work, 'snapv'))
  // The node plugin's view: its state file for the volume, and its admin API requiring the token.
  const store = new NodeStateStore(join(work, 'plugin-state'))
  await store.write({ version: 1, volumeId: 'snapv', phase: 'staged', stagingPath: join(work, 'staging'), access: { type: 'block' }, readOnly: false, attachMode: 'fuse', engine, device: null })
  const authorize = async (header: string | undefined): Promise<boolean> => tokenVerifier(TOKEN)(header)
  const plugin = new HealthServer({ listen: '127.0.0.1:0', readiness: () => undefined, routes: (app) => mountNodeAdminApi(app, { store, authorize, logger: silentLogger() }) }, { logger: silentLogger(), registry: new Registry() })
  await plugin.start()
  try {
    // The node plugin pod on node-s, as the DaemonSet would run it.
    const core = cluster.kubeConfig().makeApiClient(CoreV1Api)
    const port = Number(plugin.address().split(':').pop())
    await core.createNamespacedPod({
      namespace: NAMESPACE,
      body: { metadata: { name: 'cairn-csi-node-abcde', namespace: NAMESPACE, labels: { 'app.kubernetes.io/component': 'csi-node' } }, spec: { nodeName: 'node-s', containers: [{ name: 'cairn', image: 'cairn', ports: [{ name: 'metrics', containerPort: port }] }] } },
    })
    const pod = await core.readNamespacedPod({ name: 'cairn-csi-node-abcde', namespace: NAMESPACE })
    await core.replaceNamespacedPodStatus({ name: 'cairn-csi-node-abcde', namespace: NAMESPACE, body: { ...pod, status: { phase: 'Running', podIP: '127.0.0.1' } } })

    await runOk('nbdcopy', [join(work, 'snap-in.bin'), `nbd+unix:///snapv?socket=${engine.socketPath}`])
    const locate = kubernetesEngineLocator(cluster.kubeConfig(), { namespace: NAMESPACE })
    // Without the token the plugin refuses, and the controller reports the engine unavailable.
    const wrong = new AdminVolumeEngines(locate, 60_000, async () => 'not-the-cluster-token-0123456789')
    await assert.rejects(wrong.checkpoint(await cp.getVolume('snapv')), { name: 'EngineUnavailableError' })
    // No plugin pod on the attachment's node: unavailable too, never a snapshot missing writes.
    const elsewhere = { ...(await cp.getVolume('snapv')) }
    elsewhere.status = { ...elsewhere.status, attachment: { ...(elsewhere.status.attachment as NonNullable<typeof elsewhere.status.attachment>), nodeId: 'node-without-plugin' } }
    const engines = new AdminVolumeEngines(locate, 60_000, cachedClusterToken(cluster.kubeConfig(), NAMESPACE, 'default'))
    await assert.rejects(engines.checkpoint(elsewhere), { name: 'EngineUnavailableError' })

    await engines.checkpoint(await cp.getVolume('snapv'))
    const snapshot = await cp.createSnapshot({ name: 'snapv-1', volume: 'snapv' })
    assert.notEqual(snapshot.status.rootCid, null)
  } finally {
    await plugin.stop()
    await stopEngine(engine.socketPath)
  }
  // A volume restored from the snapshot reads back exactly what was written before it.
  await cp.createVolume({ name: 'restored', blockStore: 'default', storagePolicy: 'ec-2-1', sizeBytes: 16 * MiB, source: { snapshot: 'snapv-1' } })
  const restored = await startEngine(launch, 'restored', join(work, 'restored'))
  try {
    await runOk('nbdcopy', [`nbd+unix:///restored?socket=${restored.socketPath}`, join(work, 'snap-out.bin')])
    assert.ok((await readFile(join(work, 'snap-out.bin'))).subarray(0, data.length).equals(data))
  } finally {
    await stopEngine(restored.socketPath)
  }
})
