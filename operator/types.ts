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
}

/** A cluster map member as the BlockStore CRD publishes it (see crds/blockstore.yaml). */
export interface CrdMember {
  id: string
  node: string
  address: string
  peerId?: string
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
  conditions?: Condition[]
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
