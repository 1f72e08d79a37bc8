/**
 * Names the operator shares with the rest of Cairn: finalizers, labels,
 * annotations, condition types and reasons. One module so that a rename is one
 * edit and the Kubernetes ControlPlane, the Helm chart and the docs can point here.
 */
import { createHash } from 'node:crypto'

// The Kubernetes ControlPlane writes the same objects; the names both must agree on come from it.
export { API_VERSION, GROUP, PLURAL, VERSION, VOLUME_FINALIZER, SNAPSHOT_FINALIZER, IN_USE_FINALIZER } from '../control-plane/kubernetes/constants.js'
import { GROUP, PLURAL } from '../control-plane/kubernetes/constants.js'
export type CairnKind = keyof typeof PLURAL

/** Field manager and Event source of everything the operator writes. */
export const FIELD_MANAGER = 'cairn-operator'

// ---------------------------------------------------------------- finalizers

/** On a BlockStore: the node labels it set are removed before it goes. */
export const BLOCKSTORE_FINALIZER = 'cairn.dev/storage-node-labels'

// ---------------------------------------------------------------- node labels and annotations

/** Node label with the node's disk size in bytes; overrides status.capacity['ephemeral-storage']. */
export const DISK_BYTES_LABEL = 'cairn.dev/disk-bytes'
/** Node annotation with the libp2p peer id of the storage node running there. */
export const PEER_ID_ANNOTATION = 'cairn.dev/peer-id'
/** Node annotation a storage node reports its bytes of stored shards in. */
export const USED_BYTES_ANNOTATION = 'cairn.dev/used-bytes'
/** Node annotation a storage node reports its usable capacity in (overrides the allocation). */
export const CAPACITY_BYTES_ANNOTATION = 'cairn.dev/capacity-bytes'
/** Failure domain of nodes without the BlockStore's failureDomainKey label. */
export const HOSTNAME_LABEL = 'kubernetes.io/hostname'
/** On owned objects: a hash of the desired spec, so drift is found without comparing server defaults. */
export const SPEC_HASH_ANNOTATION = 'cairn.dev/spec-hash'
/** On owned objects and pods: which BlockStore they belong to. */
export const BLOCKSTORE_LABEL = 'cairn.dev/block-store'
export const COMPONENT_LABEL = 'app.kubernetes.io/component'
export const NAME_LABEL = 'app.kubernetes.io/name'
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'

const LABEL_NAME_MAX = 63
const STORAGE_NODE_PREFIX = 'storage-node.'

/**
 * The node label marking the nodes eligible for one BlockStore: one label per
 * block store (`cairn.dev/storage-node.<name>=true`), so a node can serve
 * several block stores and each reconciler owns exactly its own label. A label
 * name part holds at most 63 characters; longer block store names are cut and
 * suffixed with a hash of the full name, which keeps the key unique and stable.
 */
export function storageNodeLabel(blockStore: string): string {
  let name = `${STORAGE_NODE_PREFIX}${blockStore}`
  if (name.length > LABEL_NAME_MAX) {
    const hash = createHash('sha256').update(blockStore).digest('hex').slice(0, 10)
    name = `${name.slice(0, LABEL_NAME_MAX - hash.length - 1).replace(/[^A-Za-z0-9]+$/, '')}-${hash}`
  }
  return `${GROUP}/${name}`
}

/** Names of the objects a BlockStore owns, in the operator's namespace. */
export function ownedNames(blockStore: string): { daemonSet: string; service: string; secret: string } {
  const base = `cairn-storage-${blockStore}`
  return { daemonSet: base, service: base, secret: `${base}-token` }
}

// ---------------------------------------------------------------- conditions

export const CONDITION = {
  Ready: 'Ready',
  Degraded: 'Degraded',
  Progressing: 'Progressing',
  Satisfiable: 'Satisfiable',
} as const

/** CamelCase condition reasons. */
export const REASON = {
  AllNodesReady: 'AllNodesReady',
  NodesNotReady: 'NodesNotReady',
  NoEligibleNodes: 'NoEligibleNodes',
  RolloutInProgress: 'RolloutInProgress',
  RolloutComplete: 'RolloutComplete',
  EnoughFailureDomains: 'EnoughFailureDomains',
  InsufficientFailureDomains: 'InsufficientFailureDomains',
  BlockStoreNotFound: 'BlockStoreNotFound',
  StoragePolicyNotFound: 'StoragePolicyNotFound',
  PolicyUnsatisfiable: 'PolicyUnsatisfiable',
  Healthy: 'Healthy',
  Degraded: 'Degraded',
  Unavailable: 'Unavailable',
  HealthUnknown: 'HealthUnknown',
  VolumeNotFound: 'VolumeNotFound',
  SnapshotReady: 'SnapshotReady',
  SnapshotPending: 'SnapshotPending',
  Deleting: 'Deleting',
  RepairBacklog: 'RepairBacklog',
  MemberDown: 'MemberDown',
  MemberUp: 'MemberUp',
  GarbageCollected: 'GarbageCollected',
  GarbageCollectionFailed: 'GarbageCollectionFailed',
} as const

/** Storage-node ports, as `cairn storage-node` listens in the DaemonSet. */
export const GRPC_PORT = 7700
export const METRICS_PORT = 9700
/** The storage nodes' libp2p mesh (repair and rebalance transfers, heartbeats). */
export const MESH_PORT = 7800

/** The CLI's path inside the container image (Dockerfile: WORKDIR /opt/cairn, ENTRYPOINT). */
export const IMAGE_CLI_MAIN = '/opt/cairn/dist/cli/main.js'

/** ServiceAccount of the storage-node pods, in the operator's namespace: it may read BlockStores (the cluster map). */
export const STORAGE_NODE_SERVICE_ACCOUNT = 'cairn-storage-node'

