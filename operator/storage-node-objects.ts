/**
 * The Kubernetes objects a BlockStore owns, as pure functions of its spec:
 * the storage-node DaemonSet, its headless Service and the cluster-token
 * Secret. Each carries a controller owner reference to the BlockStore, so the
 * API server's garbage collector removes them with it.
 */
import { createHash, randomBytes } from 'node:crypto'
import {
  API_VERSION,
  BLOCKSTORE_LABEL,
  COMPONENT_LABEL,
  FIELD_MANAGER,
  GRPC_PORT,
  IMAGE_CLI_MAIN,
  MANAGED_BY_LABEL,
  MESH_PORT,
  METRICS_PORT,
  NAME_LABEL,
  SPEC_HASH_ANNOTATION,
  STORAGE_NODE_SERVICE_ACCOUNT,
  ownedNames,
  storageNodeLabel,
} from './constants.js'
import { BLOCKSTORE_DEFAULTS, durabilityOf } from './membership.js'
import { STORAGE_NODE_RUNTIME_FLAGS } from '../storage-node/runtime-flags.js'
import type { BlockStoreObject, OwnerReference } from './types.js'

/** Where the hostPath is mounted in the storage-node container. */
export const DATA_MOUNT_PATH = '/var/lib/cairn'

/**
 * The uid and gid the storage node runs as: the image's `node` user (Dockerfile
 * `USER node`), the same uid the Helm chart gives every unprivileged container.
 */
export const STORAGE_NODE_UID = 1000

/** Labels of every object and pod a BlockStore owns; the DaemonSet and Service select on them. */
export function ownedLabels(blockStore: string): Record<string, string> {
  return { [NAME_LABEL]: 'cairn', [COMPONENT_LABEL]: 'storage-node', [BLOCKSTORE_LABEL]: blockStore, [MANAGED_BY_LABEL]: FIELD_MANAGER }
}

/** The label selector (string form) of a BlockStore's pods. */
export function podSelector(blockStore: string): string {
  return `${NAME_LABEL}=cairn,${COMPONENT_LABEL}=storage-node,${BLOCKSTORE_LABEL}=${blockStore}`
}

function ownerReference(bs: BlockStoreObject): OwnerReference {
  return { apiVersion: API_VERSION, kind: 'BlockStore', name: bs.metadata.name, uid: bs.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }
}

function meta(bs: BlockStoreObject, name: string, namespace: string, hashOf?: unknown): Record<string, unknown> {
  const annotations = hashOf === undefined ? undefined : { [SPEC_HASH_ANNOTATION]: specHash(hashOf) }
  return { name, namespace, labels: ownedLabels(bs.metadata.name), annotations, ownerReferences: [ownerReference(bs)] }
}

/** A short hash of a desired spec: the owned object is replaced when it differs, and only then. */
export function specHash(spec: unknown): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16)
}

/** Whether `obj` is controlled by this BlockStore incarnation. */
export function isOwnedBy(obj: { metadata?: { ownerReferences?: OwnerReference[] } }, bs: BlockStoreObject): boolean {
  return (obj.metadata?.ownerReferences ?? []).some((r) => r.controller === true && r.uid === bs.metadata.uid)
}

function env(name: string, value: string | number | undefined): Record<string, unknown>[] {
  return value === undefined ? [] : [{ name, value: String(value) }]
}

function quantities(map: Record<string, string | number> | undefined): Record<string, string> | undefined {
  return map === undefined ? undefined : Object.fromEntries(Object.entries(map).map(([k, v]) => [k, String(v)]))
}

/**
 * The durability flags of `cairn storage-node`: member id (the node name, the
 * id the operator publishes), block store, mesh listener, the BlockStore CRDs
 * as control plane (the cluster map), and scrub and repair pacing. Durations
 * go as seconds with a unit, which core/config.ts parses.
 */
export function durabilityArgs(bs: BlockStoreObject): string[] {
  const d = durabilityOf(bs.spec)
  return [
    '--member-id', '$(CAIRN_NODE_NAME)',
    '--block-store', bs.metadata.name,
    '--mesh-listen', `0.0.0.0:${MESH_PORT}`,
    '--control-plane', 'kubernetes',
    '--scrub-bytes-per-second', String(d.scrubBytesPerSecond),
    '--scrub-interval', `${d.scrubIntervalSeconds}s`,
    '--repair-bandwidth-bytes-per-second', String(d.repairBandwidthBytesPerSecond),
    '--repair-interval', `${d.repairIntervalSeconds}s`,
  ]
}

function container(bs: BlockStoreObject, image: string): Record<string, unknown> {
  const spec = bs.spec
  const names = ownedNames(bs.metadata.name)
  const probe = (path: string, periodSeconds: number, failureThreshold: number): Record<string, unknown> => ({
    httpGet: { path, port: 'metrics' },
    periodSeconds,
    failureThreshold,
    timeoutSeconds: 2,
  })
  return {
    name: 'storage-node',
    image,
    // The image's entrypoint is `node <cli>`; the command repeats it to put the node's flags first.
    command: ['node', ...STORAGE_NODE_RUNTIME_FLAGS, IMAGE_CLI_MAIN],
    args: ['storage-node', '--data-dir', `${DATA_MOUNT_PATH}/data`, '--listen', `0.0.0.0:${GRPC_PORT}`, '--metrics-listen', `0.0.0.0:${METRICS_PORT}`, ...durabilityArgs(bs)],
    // The allocation depends on each node's free space, which only the pod can
    // measure: the rule travels, the storage node applies it at start.
    env: [
      { name: 'CAIRN_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'CAIRN_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'CAIRN_BLOCK_STORE', value: bs.metadata.name },
      ...env('CAIRN_CAPACITY_FRACTION', spec.capacity?.fraction ?? BLOCKSTORE_DEFAULTS.fraction),
      ...env('CAIRN_CAPACITY_MIN_BYTES', spec.capacity?.minBytes),
      ...env('CAIRN_CAPACITY_MAX_BYTES', spec.capacity?.maxBytes),
      { name: 'CAIRN_CLUSTER_TOKEN', valueFrom: { secretKeyRef: { name: names.secret, key: 'token' } } },
    ],
    ports: [
      { name: 'grpc', containerPort: GRPC_PORT, protocol: 'TCP' },
      { name: 'mesh', containerPort: MESH_PORT, protocol: 'TCP' },
      { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
    ],
    readinessProbe: probe('/readyz', 5, 3),
    livenessProbe: probe('/healthz', 10, 6),
    resources: { requests: quantities(spec.resources?.requests), limits: quantities(spec.resources?.limits) },
    volumeMounts: [{ name: 'data', mountPath: DATA_MOUNT_PATH }],
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
  }
}

/**
 * Hands the hostPath to the storage node's uid before it starts. The kubelet
 * creates a missing hostPath (DirectoryOrCreate) as root:root 0755, where a
 * non-root storage node could not create its data directory. Only this step
 * runs as root, with CHOWN as its one capability, and it changes the mount
 * point alone: what lies below is created by the storage node as its own uid.
 * docs/adr/0024-storage-node-objects.md
 */
function dataDirOwner(image: string, resources: Record<string, unknown>): Record<string, unknown> {
  return {
    name: 'data-dir-owner',
    image,
    command: ['chown', `${STORAGE_NODE_UID}:${STORAGE_NODE_UID}`, DATA_MOUNT_PATH],
    resources,
    volumeMounts: [{ name: 'data', mountPath: DATA_MOUNT_PATH }],
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['CHOWN'] },
    },
  }
}

/** The storage-node DaemonSet: one pod on every node carrying the BlockStore's storage-node label. */
export function desiredDaemonSet(bs: BlockStoreObject, namespace: string, defaultImage: string): Record<string, unknown> & { spec: unknown } {
  const name = bs.metadata.name
  const labels = ownedLabels(name)
  const image = bs.spec.image !== undefined && bs.spec.image !== '' ? bs.spec.image : defaultImage
  const main = container(bs, image)
  const spec = {
    selector: { matchLabels: labels },
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
    template: {
      metadata: { labels },
      spec: {
        nodeSelector: { [storageNodeLabel(name)]: 'true' },
        // Reads the BlockStore (the cluster map) with this account; it may do nothing else.
        serviceAccountName: STORAGE_NODE_SERVICE_ACCOUNT,
        tolerations: bs.spec.tolerations ?? [],
        terminationGracePeriodSeconds: 30,
        securityContext: { runAsUser: STORAGE_NODE_UID, runAsGroup: STORAGE_NODE_UID, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
        initContainers: [dataDirOwner(image, main.resources as Record<string, unknown>)],
        containers: [main],
        volumes: [{ name: 'data', hostPath: { path: bs.spec.hostPath ?? BLOCKSTORE_DEFAULTS.hostPath, type: 'DirectoryOrCreate' } }],
      },
    },
  }
  return { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: meta(bs, ownedNames(name).daemonSet, namespace, spec), spec }
}

/** The headless Service giving each storage-node pod a DNS name; not-ready pods are published so peers find joining members. */
export function desiredService(bs: BlockStoreObject, namespace: string): Record<string, unknown> & { spec: unknown } {
  const spec = {
    clusterIP: 'None',
    publishNotReadyAddresses: true,
    selector: ownedLabels(bs.metadata.name),
    ports: [
      { name: 'grpc', port: GRPC_PORT, targetPort: 'grpc', protocol: 'TCP' },
      { name: 'mesh', port: MESH_PORT, targetPort: 'mesh', protocol: 'TCP' },
      { name: 'metrics', port: METRICS_PORT, targetPort: 'metrics', protocol: 'TCP' },
    ],
  }
  return { apiVersion: 'v1', kind: 'Service', metadata: meta(bs, ownedNames(bs.metadata.name).service, namespace, spec), spec }
}

/** A new cluster-token Secret. Created once; an existing token is never replaced (rotation is deliberate, not a side effect). */
export function newSecret(bs: BlockStoreObject, namespace: string): Record<string, unknown> {
  const token = randomBytes(32).toString('base64url')
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: meta(bs, ownedNames(bs.metadata.name).secret, namespace),
    data: { token: Buffer.from(token).toString('base64') },
  }
}
