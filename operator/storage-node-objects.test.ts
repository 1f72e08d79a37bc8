// The storage-node DaemonSet a BlockStore yields, as a pure function of its
// spec: probes, ports, resources, tolerations, the hostPath data directory and
// who may write it (a non-root storage node on a directory the kubelet creates
// as root), and the Service and Secret beside it.
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { GRPC_PORT, IMAGE_CLI_MAIN, MESH_PORT, METRICS_PORT, storageNodeLabel } from './constants.js'
import { DATA_MOUNT_PATH, STORAGE_NODE_UID, desiredDaemonSet, desiredService, newSecret, specHash } from './storage-node-objects.js'
import type { BlockStoreObject } from './types.js'
import { STORAGE_NODE_RUNTIME_FLAGS } from '../storage-node/runtime-flags.js'
import { validateAll } from '../e2e/helm/validate.js'
import type { Manifest } from '../e2e/helm/helm.js'

interface Container {
  name: string
  image: string
  command?: string[]
  args?: string[]
  env?: Array<{ name: string; value?: string }>
  ports?: Array<{ name: string; containerPort: number }>
  readinessProbe?: { httpGet: { path: string; port: string } }
  livenessProbe?: { httpGet: { path: string; port: string } }
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
  volumeMounts?: Array<{ name: string; mountPath: string }>
  securityContext?: { runAsUser?: number; runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[]; add?: string[] } }
}

interface PodSpec {
  nodeSelector: Record<string, string>
  tolerations: unknown[]
  securityContext: { runAsUser?: number; runAsGroup?: number; runAsNonRoot?: boolean }
  initContainers: Container[]
  containers: Container[]
  volumes: Array<{ name: string; hostPath?: { path: string; type: string } }>
}

const GiB = 2 ** 30

function blockStore(spec: BlockStoreObject['spec']): BlockStoreObject {
  return { apiVersion: 'cairn.dev/v1alpha1', kind: 'BlockStore', metadata: { name: 'fast', uid: 'uid-fast', generation: 1 }, spec }
}

function podSpec(bs: BlockStoreObject, image = 'cairn:operator'): PodSpec {
  return (desiredDaemonSet(bs, 'cairn-system', image) as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec
}

describe('storage-node DaemonSet', () => {
  const tolerations = [{ key: 'dedicated', operator: 'Equal', value: 'storage', effect: 'NoSchedule' }]
  const bs = blockStore({
    hostPath: '/mnt/disks/cairn',
    capacity: { fraction: 0.5, minBytes: 10 * GiB, maxBytes: 40 * GiB },
    resources: { requests: { cpu: '500m', memory: 512 * 2 ** 20 }, limits: { memory: '2Gi' } },
    tolerations,
  })

  it('probes /healthz and /readyz on the metrics port, which it exposes with the gRPC and mesh ports', () => {
    const main = podSpec(bs).containers[0]!
    assert.deepEqual(main.livenessProbe?.httpGet, { path: '/healthz', port: 'metrics' })
    assert.deepEqual(main.readinessProbe?.httpGet, { path: '/readyz', port: 'metrics' })
    assert.deepEqual(main.ports?.map((p) => [p.name, p.containerPort]), [['grpc', GRPC_PORT], ['mesh', MESH_PORT], ['metrics', METRICS_PORT]])
    assert.ok(main.args?.includes(`0.0.0.0:${METRICS_PORT}`), 'the storage node listens for metrics where the probes look')
  })

  it('carries the resources, tolerations, capacity rule and hostPath of the spec, on the labelled nodes only', () => {
    const pod = podSpec(bs)
    const main = pod.containers[0]!
    assert.deepEqual(main.resources, { requests: { cpu: '500m', memory: String(512 * 2 ** 20) }, limits: { memory: '2Gi' } })
    assert.deepEqual(pod.tolerations, tolerations)
    assert.deepEqual(pod.nodeSelector, { [storageNodeLabel('fast')]: 'true' })
    const env = Object.fromEntries((main.env ?? []).map((e) => [e.name, e.value]))
    assert.equal(env.CAIRN_CAPACITY_FRACTION, '0.5')
    assert.equal(env.CAIRN_CAPACITY_MIN_BYTES, String(10 * GiB))
    assert.equal(env.CAIRN_CAPACITY_MAX_BYTES, String(40 * GiB))
    assert.deepEqual(pod.volumes, [{ name: 'data', hostPath: { path: '/mnt/disks/cairn', type: 'DirectoryOrCreate' } }])
    assert.deepEqual(main.volumeMounts, [{ name: 'data', mountPath: DATA_MOUNT_PATH }])
    // Defaults: no tolerations, the default hostPath, the operator's image.
    const plain = podSpec(blockStore({}))
    assert.deepEqual(plain.tolerations, [])
    assert.equal(plain.volumes[0]?.hostPath?.path, '/var/lib/cairn')
    assert.equal(plain.containers[0]?.image, 'cairn:operator')
    assert.equal(podSpec(blockStore({ image: 'cairn:pinned' })).containers[0]?.image, 'cairn:pinned')
  })

  it('runs the storage node non-root; only a CHOWN-only init step, as root, hands it the root-owned hostPath', () => {
    const pod = podSpec(bs)
    assert.deepEqual(pod.securityContext, { runAsUser: STORAGE_NODE_UID, runAsGroup: STORAGE_NODE_UID, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })
    const main = pod.containers[0]!
    assert.equal(main.securityContext?.runAsUser, undefined, 'the storage node keeps the pod-level non-root uid')
    assert.deepEqual(main.securityContext?.capabilities, { drop: ['ALL'] })
    assert.equal(main.securityContext?.allowPrivilegeEscalation, false)
    // The node's runtime flags go before the CLI, at the path the image's entrypoint names.
    assert.deepEqual(main.command, ['node', ...STORAGE_NODE_RUNTIME_FLAGS, IMAGE_CLI_MAIN])
    assert.match(readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8'), new RegExp(`ENTRYPOINT \\["node", "${IMAGE_CLI_MAIN}"\\]`))
    // The kubelet creates a missing hostPath as root:root 0755: without this step uid 1000 cannot make its data directory.
    assert.equal(pod.initContainers.length, 1)
    const init = pod.initContainers[0]!
    assert.equal(init.image, main.image)
    assert.deepEqual(init.command, ['chown', `${STORAGE_NODE_UID}:${STORAGE_NODE_UID}`, DATA_MOUNT_PATH])
    assert.deepEqual(init.volumeMounts, [{ name: 'data', mountPath: DATA_MOUNT_PATH }])
    assert.equal(init.securityContext?.runAsUser, 0)
    assert.equal(init.securityContext?.runAsNonRoot, false)
    assert.deepEqual(init.securityContext?.capabilities, { drop: ['ALL'], add: ['CHOWN'] })
    assert.equal(init.securityContext?.allowPrivilegeEscalation, false)
    assert.deepEqual(init.resources, main.resources, 'the init step fits in what the pod already requests')
  })

  it('changes its spec hash when the spec changes, and only then', () => {
    const a = desiredDaemonSet(bs, 'cairn-system', 'cairn:operator')
    const b = desiredDaemonSet(blockStore({ ...bs.spec }), 'cairn-system', 'cairn:operator')
    const c = desiredDaemonSet(blockStore({ ...bs.spec, tolerations: [] }), 'cairn-system', 'cairn:operator')
    assert.equal(specHash(a.spec), specHash(b.spec))
    assert.notEqual(specHash(a.spec), specHash(c.spec))
  })
})

describe('storage-node Service and Secret', () => {
  it('a headless Service publishing not-ready pods, and a fresh random token per Secret', () => {
    const svc = desiredService(blockStore({}), 'cairn-system') as unknown as { spec: { clusterIP: string; publishNotReadyAddresses: boolean; ports: Array<{ name: string }> } }
    assert.equal(svc.spec.clusterIP, 'None')
    assert.equal(svc.spec.publishNotReadyAddresses, true)
    assert.deepEqual(svc.spec.ports.map((p) => p.name), ['grpc', 'mesh', 'metrics'])
    const token = (s: Record<string, unknown>): string => Buffer.from((s.data as { token: string }).token, 'base64').toString('utf8')
    const one = token(newSecret(blockStore({}), 'cairn-system'))
    const two = token(newSecret(blockStore({}), 'cairn-system'))
    assert.ok(one.length >= 32)
    assert.notEqual(one, two)
  })
})

describe('owned objects against the Kubernetes schemas', () => {
  it('the DaemonSet, Service and Secret validate as apps/v1 and core/v1 objects (no unknown or mistyped field)', async () => {
    const bs = blockStore({ capacity: { fraction: 0.5 }, resources: { requests: { cpu: '250m' } }, tolerations: [{ operator: 'Exists' }] })
    const owned = [desiredDaemonSet(bs, 'cairn-system', 'cairn:operator'), desiredService(bs, 'cairn-system'), newSecret(bs, 'cairn-system')]
    // JSON round trip: what the API server receives (undefined fields dropped).
    const manifests = JSON.parse(JSON.stringify(owned)) as Manifest[]
    assert.deepEqual(await validateAll(manifests), [])
    // The checker is not blind: a misspelt pod field is reported against the DaemonSet.
    const broken = structuredClone(manifests)
    ;((broken[0]!.spec as { template: { spec: Record<string, unknown> } }).template.spec).initContainer = []
    const problems = await validateAll(broken)
    assert.ok(problems.some((p) => p.startsWith('DaemonSet/') && p.includes('initContainer')), problems.join('\n'))
  })
})
