/**
 * The CSI driver's and the storage nodes' control-plane calls under exactly the
 * RBAC the Helm chart grants each of their ServiceAccounts: the test API server answers 403 to
 * whatever the rendered Roles do not allow, as kube-apiserver's RBAC would. The
 * Kubernetes ControlPlane must start (a node plugin and each engine it runs
 * start one) and make the calls each side makes. rbac.test.ts bounds the grants
 * from above; this checks they are enough.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node'
import yaml from 'js-yaml'
import { silentLogger } from '../../core/logger.js'
import { createKubernetesControlPlane, type KubernetesControlPlane } from '../../control-plane/kubernetes/kubernetes-control-plane.js'
import { TestApiServer, type RequestAttributes } from '../test-apiserver/index.js'
import { join } from 'node:path'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { STORAGE_NODE_SERVICE_ACCOUNT } from '../../operator/constants.js'
import { openMapSource } from '../../cli/commands/storage-node-maps.js'
import { ROOT, render } from './helm.js'
import { can } from './rbac.js'

const NS = 'cairn-system'
const ADMIN_TOKEN = 'cairn-test-token'
const ACCOUNTS: Record<string, { name: string; namespace: string }> = {
  'csi-node-token': { name: 'cairn-csi-node', namespace: NS },
  'csi-controller-token': { name: 'cairn-csi-controller', namespace: NS },
  'storage-node-token': { name: STORAGE_NODE_SERVICE_ACCOUNT, namespace: NS },
}
const manifests = render({})
const denied: string[] = []
let server: TestApiServer

function authorize(a: RequestAttributes): boolean {
  if (a.user === ADMIN_TOKEN) return true
  const account = a.user === undefined ? undefined : ACCOUNTS[a.user]
  if (account === undefined) return false
  if (!a.resourceRequest) return true
  const resource = a.subresource === undefined ? (a.resource ?? '') : `${a.resource}/${a.subresource}`
  const ok = can(manifests, account, { group: a.group ?? '', resource, verb: a.verb, namespace: a.namespace, name: a.name })
  if (!ok) denied.push(`${account.name}: ${a.verb} ${a.group}/${resource}`)
  return ok
}

function kubeconfigAs(token: string): string {
  const config = yaml.load(server.kubeconfig()) as { users: Array<{ user: { token: string } }> }
  config.users[0]!.user.token = token
  return yaml.dump(config)
}

function controlPlaneAs(token: string): KubernetesControlPlane {
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromString(kubeconfigAs(token))
  return createKubernetesControlPlane({ kubeConfig }, { logger: silentLogger() })
}

before(async () => {
  server = new TestApiServer({ authorize })
  await server.start()
  await server.installCrds(join(ROOT, 'crds'))
  const admin = new KubeConfig()
  admin.loadFromString(server.kubeconfig())
  const custom = admin.makeApiClient(CustomObjectsApi)
  const cr = (plural: string, kind: string, name: string, spec: object) =>
    custom.createClusterCustomObject({ group: 'cairn.dev', version: 'v1alpha1', plural, body: { apiVersion: 'cairn.dev/v1alpha1', kind, metadata: { name }, spec } })
  await cr('blockstores', 'BlockStore', 'default', {})
  await cr('storagepolicies', 'StoragePolicy', 'ec-4-2', { blockStore: 'default', dataShards: 4, parityShards: 2 })
})

after(async () => {
  await server.stop()
})

test("the CSI controller's control-plane calls are allowed by its chart RBAC", async () => {
  denied.length = 0
  const cp = controlPlaneAs('csi-controller-token')
  try {
    await cp.start()
    const volume = await cp.createVolume({ name: 'pvc-1', blockStore: 'default', storagePolicy: 'ec-4-2', sizeBytes: 1 << 20 })
    await cp.resizeVolume(volume.name, 2 << 20)
    await cp.createSnapshot({ name: 'snap-1', volume: volume.name })
    assert.equal((await cp.listSnapshots()).items.length, 1)
    await cp.deleteSnapshot('snap-1')
    await cp.getStoragePolicy('ec-4-2')
  } finally {
    await cp.stop()
  }
  assert.deepEqual(denied, [])
})

test("the CSI node plugin's (and its engines') control-plane calls are allowed by its chart RBAC", async () => {
  denied.length = 0
  const cp = controlPlaneAs('csi-node-token')
  try {
    await cp.start()
    const volume = await cp.getVolume('pvc-1')
    await cp.getStoragePolicy(volume.storagePolicy)
    await cp.getBlockStore(volume.blockStore)
    await cp.getClusterMap(volume.blockStore)
    const attached = await cp.acquireEpoch(volume.name, 'node-a', volume.status.epoch)
    await cp.releaseAttachment(volume.name, 'node-a', attached.status.epoch)
  } finally {
    await cp.stop()
  }
  // The one refusal is start()'s install check of a kind the node side never reads; start skips it.
  assert.deepEqual(denied, ['cairn-csi-node: list cairn.dev/snapshots'])
})

test('credentials that may list no Cairn kind at all fail at start, not at first use', async () => {
  const cp = controlPlaneAs('a-token-with-no-grants')
  await assert.rejects(cp.start(), { name: 'KubernetesPermissionDeniedError' })
  await cp.stop()
})

test("a storage node's cluster-map reads are allowed by its chart RBAC (BlockStores only)", async () => {
  denied.length = 0
  const dir = await mkdtemp(join(tmpdir(), 'cairn-storage-node-rbac-'))
  try {
    await writeFile(join(dir, 'kubeconfig'), kubeconfigAs('storage-node-token'), { mode: 0o600 })
    const source = await openMapSource({ controlPlane: { kind: 'kubernetes', kubeconfig: join(dir, 'kubeconfig') } } as never, silentLogger())
    await source.start()
    assert.deepEqual(await source.getClusterMap('default'), { epoch: 0, members: [] })
    await source.stop()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  assert.deepEqual(denied, [])
})

