/**
 * Typed CSI requests and responses, as the services see them. The wire objects
 * (snake_case, proto-loader shapes) are converted to these at the edge in
 * `convert.ts` and never travel further; services work only with these.
 *
 * Unset proto3 scalars arrive as their zero value ('' or 0), exactly as the spec
 * treats them ("an empty string is equal to an unspecified field value"), so the
 * services validate "missing" as empty.
 */

export type AccessMode =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER'

/** How a volume is accessed: a raw block device or a filesystem; absent when the request named neither. */
export type AccessType =
  | { kind: 'block' }
  | { kind: 'mount'; fsType: string; mountFlags: string[]; volumeMountGroup: string }

export interface VolumeCapability {
  accessType: AccessType | undefined
  /** 'UNKNOWN' when the request left it unset. */
  accessMode: AccessMode
}

/** 0 means "not given" for either bound, as in the spec. */
export interface CapacityRange {
  requiredBytes: number
  limitBytes: number
}

export type ContentSource = { kind: 'snapshot'; snapshotId: string } | { kind: 'volume'; volumeId: string }

export interface Topology {
  segments: Record<string, string>
}

export interface TopologyRequirement {
  requisite: Topology[]
  preferred: Topology[]
}

export interface CsiVolume {
  capacityBytes: number
  volumeId: string
  volumeContext: Record<string, string>
  contentSource: ContentSource | undefined
  accessibleTopology: Topology[]
}

export interface CsiSnapshot {
  sizeBytes: number
  snapshotId: string
  sourceVolumeId: string
  /** RFC 3339. */
  creationTime: string
  readyToUse: boolean
}

export interface VolumeCondition {
  abnormal: boolean
  message: string
}

/** Secrets maps are carried so services can use them, and never logged (see server.ts). */
export type Secrets = Record<string, string>

// ---------------------------------------------------------------- identity

export type PluginCapability =
  | { kind: 'service'; type: 'CONTROLLER_SERVICE' | 'VOLUME_ACCESSIBILITY_CONSTRAINTS' }
  | { kind: 'volumeExpansion'; type: 'ONLINE' | 'OFFLINE' }

export interface PluginInfo {
  name: string
  vendorVersion: string
  manifest: Record<string, string>
}

export interface IdentityService {
  getPluginInfo(): Promise<PluginInfo>
  getPluginCapabilities(): Promise<PluginCapability[]>
  /** Ready (true) or still initialising (false); an unhealthy plugin throws. */
  probe(): Promise<{ ready: boolean }>
}

// ---------------------------------------------------------------- controller

export interface CreateVolumeRequest {
  name: string
  capacityRange: CapacityRange | undefined
  volumeCapabilities: VolumeCapability[]
  parameters: Record<string, string>
  secrets: Secrets
  contentSource: ContentSource | undefined
  accessibilityRequirements: TopologyRequirement | undefined
}

export interface DeleteVolumeRequest {
  volumeId: string
  secrets: Secrets
}

export interface ControllerPublishVolumeRequest {
  volumeId: string
  nodeId: string
  volumeCapability: VolumeCapability | undefined
  readonly: boolean
  secrets: Secrets
  volumeContext: Record<string, string>
}

export interface ControllerUnpublishVolumeRequest {
  volumeId: string
  nodeId: string
  secrets: Secrets
}

export interface ValidateVolumeCapabilitiesRequest {
  volumeId: string
  volumeContext: Record<string, string>
  volumeCapabilities: VolumeCapability[]
  parameters: Record<string, string>
  secrets: Secrets
}

/** `confirmed` undefined: not supported, `message` says why. */
export interface ValidateVolumeCapabilitiesResponse {
  confirmed:
    | { volumeContext: Record<string, string>; volumeCapabilities: VolumeCapability[]; parameters: Record<string, string> }
    | undefined
  message: string
}

export interface ListRequest {
  maxEntries: number
  startingToken: string
}

export interface VolumeStatus {
  publishedNodeIds: string[]
  volumeCondition: VolumeCondition
}

export interface ListVolumesResponse {
  entries: Array<{ volume: CsiVolume; status: VolumeStatus }>
  /** '' on the last page. */
  nextToken: string
}

export interface GetCapacityRequest {
  volumeCapabilities: VolumeCapability[]
  parameters: Record<string, string>
  accessibleTopology: Topology | undefined
}

export interface GetCapacityResponse {
  availableCapacity: number
  maximumVolumeSize: number | undefined
  minimumVolumeSize: number | undefined
}

export type ControllerCapability =
  | 'CREATE_DELETE_VOLUME'
  | 'PUBLISH_UNPUBLISH_VOLUME'
  | 'LIST_VOLUMES'
  | 'GET_CAPACITY'
  | 'CREATE_DELETE_SNAPSHOT'
  | 'LIST_SNAPSHOTS'
  | 'CLONE_VOLUME'
  | 'PUBLISH_READONLY'
  | 'EXPAND_VOLUME'
  | 'LIST_VOLUMES_PUBLISHED_NODES'
  | 'VOLUME_CONDITION'
  | 'GET_VOLUME'
  | 'SINGLE_NODE_MULTI_WRITER'

export interface CreateSnapshotRequest {
  sourceVolumeId: string
  name: string
  secrets: Secrets
  parameters: Record<string, string>
}

export interface DeleteSnapshotRequest {
  snapshotId: string
  secrets: Secrets
}

export interface ListSnapshotsRequest extends ListRequest {
  sourceVolumeId: string
  snapshotId: string
  secrets: Secrets
}

export interface ListSnapshotsResponse {
  entries: CsiSnapshot[]
  nextToken: string
}

export interface ControllerExpandVolumeRequest {
  volumeId: string
  capacityRange: CapacityRange | undefined
  secrets: Secrets
  volumeCapability: VolumeCapability | undefined
}

export interface ControllerExpandVolumeResponse {
  capacityBytes: number
  nodeExpansionRequired: boolean
}

export interface ControllerService {
  createVolume(req: CreateVolumeRequest): Promise<CsiVolume>
  deleteVolume(req: DeleteVolumeRequest): Promise<void>
  controllerPublishVolume(req: ControllerPublishVolumeRequest): Promise<{ publishContext: Record<string, string> }>
  controllerUnpublishVolume(req: ControllerUnpublishVolumeRequest): Promise<void>
  validateVolumeCapabilities(req: ValidateVolumeCapabilitiesRequest): Promise<ValidateVolumeCapabilitiesResponse>
  listVolumes(req: ListRequest): Promise<ListVolumesResponse>
  getCapacity(req: GetCapacityRequest): Promise<GetCapacityResponse>
  controllerGetCapabilities(): Promise<ControllerCapability[]>
  createSnapshot(req: CreateSnapshotRequest): Promise<CsiSnapshot>
  deleteSnapshot(req: DeleteSnapshotRequest): Promise<void>
  listSnapshots(req: ListSnapshotsRequest): Promise<ListSnapshotsResponse>
  controllerExpandVolume(req: ControllerExpandVolumeRequest): Promise<ControllerExpandVolumeResponse>
  controllerGetVolume(req: { volumeId: string }): Promise<{ volume: CsiVolume; status: VolumeStatus }>
}

// ---------------------------------------------------------------- node

export interface NodeStageVolumeRequest {
  volumeId: string
  publishContext: Record<string, string>
  stagingTargetPath: string
  volumeCapability: VolumeCapability | undefined
  secrets: Secrets
  volumeContext: Record<string, string>
}

export interface NodeUnstageVolumeRequest {
  volumeId: string
  stagingTargetPath: string
}

export interface NodePublishVolumeRequest {
  volumeId: string
  publishContext: Record<string, string>
  stagingTargetPath: string
  targetPath: string
  volumeCapability: VolumeCapability | undefined
  readonly: boolean
  secrets: Secrets
  volumeContext: Record<string, string>
}

export interface NodeUnpublishVolumeRequest {
  volumeId: string
  targetPath: string
}

export interface NodeGetVolumeStatsRequest {
  volumeId: string
  volumePath: string
  stagingTargetPath: string
}

export interface VolumeUsage {
  unit: 'UNKNOWN' | 'BYTES' | 'INODES'
  available: number
  total: number
  used: number
}

export interface NodeGetVolumeStatsResponse {
  usage: VolumeUsage[]
  volumeCondition: VolumeCondition | undefined
}

export interface NodeExpandVolumeRequest {
  volumeId: string
  volumePath: string
  capacityRange: CapacityRange | undefined
  stagingTargetPath: string
  volumeCapability: VolumeCapability | undefined
  secrets: Secrets
}

export type NodeCapability =
  | 'STAGE_UNSTAGE_VOLUME'
  | 'GET_VOLUME_STATS'
  | 'EXPAND_VOLUME'
  | 'VOLUME_CONDITION'
  | 'SINGLE_NODE_MULTI_WRITER'
  | 'VOLUME_MOUNT_GROUP'

export interface NodeInfo {
  nodeId: string
  /** 0: no limit. */
  maxVolumesPerNode: number
  accessibleTopology: Topology | undefined
}

/**
 * The node service (csi-driver/node-service.ts). server.ts converts its requests
 * and responses; it implements only these typed methods.
 */
export interface NodeService {
  nodeStageVolume(req: NodeStageVolumeRequest): Promise<void>
  nodeUnstageVolume(req: NodeUnstageVolumeRequest): Promise<void>
  nodePublishVolume(req: NodePublishVolumeRequest): Promise<void>
  nodeUnpublishVolume(req: NodeUnpublishVolumeRequest): Promise<void>
  nodeGetVolumeStats(req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse>
  nodeExpandVolume(req: NodeExpandVolumeRequest): Promise<{ capacityBytes: number }>
  nodeGetCapabilities(): Promise<NodeCapability[]>
  nodeGetInfo(): Promise<NodeInfo>
}
