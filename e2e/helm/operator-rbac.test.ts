/**
 * The operator under exactly the RBAC the Helm chart grants it: the real
 * `cairn operator` process talks to a test API server that answers 403 to every
 * request the rendered Roles and bindings of its ServiceAccount do not allow (the
 * way kube-apiserver's RBAC authorizer would). It must reconcile a BlockStore with
 * storage-node pods, a StoragePolicy, a Volume and a Snapshot, and their deletion,
 * without a single denied request. rbac.test.ts checks the chart grants no more
 * than this; this test checks it grants enough.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { TestApiServer, type RequestAttributes } from '../test-apiserver/index.js'
import { ownedNames, storageNodeLabel } from '../../operator/constants.js'
import { ownedLabels } from '../../operator/storage-node-objects.js'
import type { BlockStoreObject, SnapshotObject, StoragePolicyObject, VolumeObject } from '../../operator/types.js'
import { ROOT, render } from './helm.js'
import { can } from './rbac.js'

const NS = 'cairn-system'
const OPERATOR = { name: 'cairn-operator', namespace: NS }
const OPERATOR_TOKEN = 'operator-service-account-token'
const ADMIN_TOKEN = 'cairn-test-token'
const MAIN = join(ROOT, 'dist', 'cli', 'main.js')
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
const cairn = { group: 'cairn.dev', version: 'v1alpha1' }
const PLURALS = { BlockStore: 'blockstores', StoragePolicy: 'storagepolicies', Volume: 'volumes', Snapshot: 'snapshots' } as const

const manifests = render({})
const allowed = new Set<string>()
const denied: string[] = []
let server: TestApiServer
let dir: string
let core: CoreV1Api
let custom: CustomObjectsApi
let operator: ChildProcess | undefined
let operatorLog = ''

function describeRequest(a: RequestAttributes): string {
  const resource = a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`
  return `${a.verb} ${a.group === '' ? 'core' : a.group}/${resource}${a.namespace === undefined ? '' : ` in ${a.namespace}`}`
}

/** The chart's RBAC for the operator's token; everything for the test's own (admin) token. */
function authorize(a: RequestAttributes): boolean {
  if (a.user === ADMIN_TOKEN) return true
  if (a.user !== OPERATOR_TOKEN) return false
  // Discovery and /version are open to every authenticated user (system:discovery).
  if (!a.resourceRequest) return true
  const resource = a.subresource === undefined ? (a.resource ?? '') : `${a.resource}/${a.subresource}`
  const ok = can(manifests, OPERATOR, { group: a.group ?? '', resource, verb: a.verb, namespace: a.namespace, name: a.name })
  if (ok) allowed.add(describeRequest(a))
  else denied.push(`${describeRequest(a)}${a.name === undefined ? '' : ` (${a.name})`}`)
  return ok
}

/** Polls `probe` until it holds, failing at once when the operator has been denied anything. */
async function converge<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (denied.length > 0) assert.fail(`the chart's RBAC denied the operator: ${[...new Set(denied)].join('; ')}`)
    const value = await probe().catch(() => undefined)
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

async function createCr(kind: keyof typeof PLURALS, name: string, spec: Record<string, unknown>): Promise<void> {
  await custom.createClusterCustomObject({ ...cairn, plural: PLURALS[kind], body: { apiVersion: 'cairn.dev/v1alpha1', kind, metadata: { name }, spec } })
}

async function getCr<T>(kind: keyof typeof PLURALS, name: string): Promise<T | undefined> {
  try {
    return (await custom.getClusterCustomObject({ ...cairn, plural: PLURALS[kind], name })) as T
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined
    throw err
  }
}

async function labelled(): Promise<string[]> {
  return (await core.listNode({ labelSelector: `${storageNodeLabel('rbac')}=true` })).items.map((n) => n.metadata?.name as string).sort()
}

before(async () => {
  server = new TestApiServer({ bookmarkIntervalMs: 100, authorize })
  await server.start()
  await server.installCrds(join(ROOT, 'crds'))
  dir = await mkdtemp(join(tmpdir(), 'cairn-operator-rbac-'))
  await server.writeKubeconfig(join(dir, 'admin'))
  await writeFile(join(dir, 'operator'), server.kubeconfig().replace(ADMIN_TOKEN, OPERATOR_TOKEN), { mode: 0o600 })
  const kc = new KubeConfig()
  kc.loadFromFile(join(dir, 'admin'))
  core = kc.makeApiClient(CoreV1Api)
  custom = kc.makeApiClient(CustomObjectsApi)
  await core.createNamespace({ body: { metadata: { name: NS } } })
  for (const [i, name] of ['n1', 'n2', 'n3'].entries()) {
    const status = { capacity: { 'ephemeral-storage': '100Gi', memory: '8Gi' }, allocatable: { memory: '8Gi' }, conditions: [{ type: 'Ready', status: 'True' }] }
    await core.createNode({ body: { metadata: { name, labels: { 'kubernetes.io/hostname': name, 'topology.kubernetes.io/zone': `z${i}`, role: 'storage' } }, status } as never })
  }
})

after(async () => {
  operator?.kill('SIGKILL')
  await server.stop()
  await rm(dir, { recursive: true, force: true })
})

test("the operator reconciles and deletes every kind without a request the chart's RBAC denies", async () => {
  const child = spawn(process.execPath, [MAIN, 'operator', '--kubeconfig', join(dir, 'operator'), '--namespace', NS, '--lease-name', 'cairn-leader', '--identity', 'rbac-op',
    '--metrics-listen', '127.0.0.1:0', '--lease-duration-ms', '2000', '--renew-deadline-ms', '1500', '--retry-period-ms', '200'], { stdio: ['ignore', 'ignore', 'pipe'] })
  operator = child
  child.stderr?.on('data', (chunk: Buffer) => (operatorLog = (operatorLog + chunk.toString()).slice(-8000)))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  try {
    await createCr('BlockStore', 'rbac', { nodeSelector: { matchLabels: { role: 'storage' } } })
    // Loading the CLI on the shared 2-core machine has taken over 15 s: a generous first wait.
    await converge('three labelled nodes', async () => JSON.stringify(await labelled()) === '["n1","n2","n3"]', 90_000)
    // The kubelet's part: a ready storage-node pod on each node.
    for (const [i, node] of ['n1', 'n2', 'n3'].entries()) {
      await core.createNamespacedPod({ namespace: NS, body: { metadata: { name: `storage-${node}`, labels: ownedLabels('rbac') }, spec: { nodeName: node, containers: [{ name: 'storage-node', image: 'cairn:test' }] } } })
      await core.patchNamespacedPodStatus({ name: `storage-${node}`, namespace: NS, body: { status: { phase: 'Running', podIP: `127.88.0.${i + 1}`, conditions: [{ type: 'Ready', status: 'True' }] } } }, MERGE)
    }
    await converge('three Up members', async () => {
      const members = (await getCr<BlockStoreObject>('BlockStore', 'rbac'))?.status?.clusterMap?.members ?? []
      return members.length === 3 && members.every((m) => m.state === 'Up')
    })
    await createCr('StoragePolicy', 'rbac-2-1', { blockStore: 'rbac', dataShards: 2, parityShards: 1 })
    await converge('Satisfiable', async () => (await getCr<StoragePolicyObject>('StoragePolicy', 'rbac-2-1'))?.status?.conditions?.find((c) => c.type === 'Satisfiable')?.status === 'True')
    await createCr('Volume', 'rbac-vol', { blockStore: 'rbac', storagePolicy: 'rbac-2-1', sizeBytes: 1 << 20 })
    await converge('a Healthy volume', async () => (await getCr<VolumeObject>('Volume', 'rbac-vol'))?.status?.health === 'Healthy')
    await createCr('Snapshot', 'rbac-snap', { volume: 'rbac-vol' })
    await converge('a pending snapshot', async () => (await getCr<SnapshotObject>('Snapshot', 'rbac-snap'))?.status?.conditions?.some((c) => c.reason === 'SnapshotPending'))
    for (const [kind, name] of [['Snapshot', 'rbac-snap'], ['Volume', 'rbac-vol'], ['StoragePolicy', 'rbac-2-1'], ['BlockStore', 'rbac']] as const) {
      await custom.deleteClusterCustomObject({ ...cairn, plural: PLURALS[kind], name })
      await converge(`${kind} ${name} gone`, async () => (await getCr(kind, name)) === undefined)
    }
    await converge('labels removed', async () => (await labelled()).length === 0)
    const apps = new KubeConfig()
    apps.loadFromFile(join(dir, 'admin'))
    const left = await apps.makeApiClient(AppsV1Api).listNamespacedDaemonSet({ namespace: NS })
    assert.deepEqual(left.items.map((d) => d.metadata?.name), [], `${ownedNames('rbac').daemonSet} collected with its BlockStore`)
  } catch (err) {
    throw new Error(`${(err as Error).message}\noperator log (tail):\n${operatorLog}`, { cause: err })
  }
  assert.deepEqual(denied, [])
  // The run exercised what the grants are for, so an empty denial list means something.
  for (const need of ['list core/pods in cairn-system', 'watch core/pods in cairn-system', 'patch core/nodes', 'create apps/daemonsets in cairn-system', 'create core/secrets in cairn-system',
    'create core/serviceaccounts in cairn-system', 'update coordination.k8s.io/leases in cairn-system', 'create core/events in cairn-system', 'update cairn.dev/blockstores/status', 'patch cairn.dev/volumes']) {
    assert.ok(allowed.has(need), `the run never made a request to ${need}; made: ${[...allowed].sort().join('; ')}`)
  }
  child.kill('SIGTERM')
  assert.equal(await exited, 0)
  operator = undefined
})
