/**
 * The shapes of the Kubernetes objects the operator reads, as far as it reads
 * them. Objects arrive as untyped JSON; these types name the fields used, and
 * every field is optional because the API server may omit any of them.
 */

export interface ObjectMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  deletionTimestamp?: string
  creationTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  finalizers?: string[]
  ownerReferences?: OwnerReference[]
}

export interface OwnerReference {
  apiVersion: string
  kind: string
  name: string
  uid: string
  controller?: boolean
  blockOwnerDeletion?: boolean
}

export interface KubeObject {
  apiVersion?: string
  kind?: string
  metadata: ObjectMeta
  spec?: unknown
  status?: unknown
}

export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason?: string
  message?: string
  observedGeneration?: number
  lastTransitionTime?: string
}

export interface LabelSelector {
  matchLabels?: Record<string, string>
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[]
}

export interface NodeObject extends KubeObject {
  spec?: { unschedulable?: boolean }
  status?: {
    capacity?: Record<string, string>
    allocatable?: Record<string, string>
    conditions?: { type: string; status: string }[]
  }
}

export interface PodObject extends KubeObject {
  spec?: { nodeName?: string }
  status?: { podIP?: string; conditions?: { type: string; status: string }[] }
}

export interface BlockStoreSpec {
  nodeSelector?: LabelSelector
  eligibility?: { minDiskBytes?: number; minMemoryBytes?: number }
  hostPath?: string
  capacity?: { fraction?: number; minBytes?: number; maxBytes?: number }
  failureDomainKey?: string
  image?: string
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> }
  tolerations?: Record<string, unknown>[]
  durability?: DurabilitySpec
  pins?: { cid: string; note?: string }[]
}

/** BlockStore `spec.durability` (crds/blockstore.yaml); every field has a CRD default. */
export interface DurabilitySpec {
  memberDownTimeoutSeconds?: number
  scrubBytesPerSecond?: number
  scrubIntervalSeconds?: number
  repairBandwidthBytesPerSecond?: number
  repairIntervalSeconds?: number
  gcIntervalSeconds?: number
  gcGracePeriodSeconds?: number
}

/** A cluster map member as the BlockStore CRD publishes it (see crds/blockstore.yaml). */
export interface CrdMember {
  id: string
  node: string
  address: string
  peerId?: string
  /** libp2p mesh `host:port` (pod IP and mesh port). */
  meshAddress?: string
  failureDomain: string
  weightBytes: number
  state: 'Joining' | 'Up' | 'Draining' | 'Down'
}

export interface CrdClusterMap {
  epoch: number
  members: CrdMember[]
}

export interface BlockStoreStatus {
  observedGeneration?: number
  eligibleNodes?: number
  readyNodes?: number
  capacityBytes?: number
  usedBytes?: number
  clusterMap?: CrdClusterMap
  repair?: BlockStoreRepairStatus
  scrub?: BlockStoreScrubStatus
  gc?: BlockStoreGcStatus
  conditions?: Condition[]
}

/** Repair progress summed over the storage nodes' Stats. */
export interface BlockStoreRepairStatus {
  backlogShards: number
  repairedShards: number
  movedShards: number
  movedBytes: number
  /** When the slowest node last completed a pass; absent until every reporting node has. */
  lastPassTime?: string
}

/** Scrub results summed over the storage nodes' Stats. */
export interface BlockStoreScrubStatus {
  scrubbedShards: number
  badShards: number
  /** When the slowest node last completed a pass; absent until every reporting node has. */
  lastPassTime?: string
}

/** The last garbage collection the operator ran on this block store. */
export interface BlockStoreGcStatus {
  lastRunTime?: string
  lastFreedBytes?: number
  lastOutcome?: 'Succeeded' | 'Failed'
}

export interface BlockStoreObject extends KubeObject {
  spec: BlockStoreSpec
  status?: BlockStoreStatus
}

export interface StoragePolicyObject extends KubeObject {
  spec: { blockStore: string; dataShards: number; parityShards: number; failureDomainKey?: string }
  status?: { observedGeneration?: number; failureDomains?: number; conditions?: Condition[] }
}

export interface VolumeObject extends KubeObject {
  spec: { blockStore: string; storagePolicy: string; sizeBytes: number }
  status?: { observedGeneration?: number; health?: 'Healthy' | 'Degraded' | 'Unavailable' | 'Unknown'; conditions?: Condition[] } & Record<string, unknown>
}

export interface SnapshotObject extends KubeObject {
  spec: { volume: string }
  status?: { readyToUse?: boolean; conditions?: Condition[] } & Record<string, unknown>
}

export interface DaemonSetObject extends KubeObject {
  status?: { desiredNumberScheduled?: number; numberReady?: number; updatedNumberScheduled?: number; observedGeneration?: number }
}
