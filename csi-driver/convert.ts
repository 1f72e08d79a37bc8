/**
 * The edge between the CSI wire (proto-loader objects: snake_case, `keepCase`,
 * enums as strings, int64 as numbers, unset messages as null) and the typed objects
 * of types.ts. Nothing past server.ts sees a wire object.
 */
import { InvalidArgumentError } from '../core/errors.js'
import type * as T from './types.js'

/** A decoded protobuf message as proto-loader hands it over. */
export type Wire = Record<string, unknown>

/** proto-loader options the wire shapes here assume. */
export const CSI_PROTO_LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, arrays: true } as const

const ACCESS_MODES: ReadonlySet<string> = new Set<T.AccessMode>([
  'UNKNOWN', 'SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER',
  'MULTI_NODE_MULTI_WRITER', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER',
])

// ---------------------------------------------------------------- primitive readers

function msg(value: unknown): Wire | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Wire) : undefined
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

/** int64/int32 fields; a value beyond 2^53 cannot be a byte count Cairn serves. */
function int(field: string, value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'number' ? value : 0
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${field}: ${String(value)} is not a safe integer`)
  return n
}

function strMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(msg(value) ?? {})) out[k] = str(v)
  return out
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : []
}

// ---------------------------------------------------------------- shared messages

export function capabilityFromWire(value: unknown): T.VolumeCapability | undefined {
  const m = msg(value)
  if (m === undefined) return undefined
  const modeRaw = str(msg(m.access_mode)?.mode)
  const accessMode = (ACCESS_MODES.has(modeRaw) ? modeRaw : 'UNKNOWN') as T.AccessMode
  let accessType: T.AccessType | undefined
  const mount = msg(m.mount)
  if (msg(m.block) !== undefined) accessType = { kind: 'block' }
  else if (mount !== undefined) {
    accessType = { kind: 'mount', fsType: str(mount.fs_type), mountFlags: list(mount.mount_flags).map(str), volumeMountGroup: str(mount.volume_mount_group) }
  }
  return { accessType, accessMode }
}

export function capabilityToWire(cap: T.VolumeCapability): Wire {
  const wire: Wire = { access_mode: { mode: cap.accessMode } }
  if (cap.accessType?.kind === 'block') wire.block = {}
  if (cap.accessType?.kind === 'mount') {
    wire.mount = { fs_type: cap.accessType.fsType, mount_flags: cap.accessType.mountFlags, volume_mount_group: cap.accessType.volumeMountGroup }
  }
  return wire
}

function capabilitiesFromWire(value: unknown): T.VolumeCapability[] {
  return list(value).map(capabilityFromWire).filter((c): c is T.VolumeCapability => c !== undefined)
}

export function capacityRangeFromWire(value: unknown): T.CapacityRange | undefined {
  const m = msg(value)
  if (m === undefined) return undefined
  return { requiredBytes: int('capacity_range.required_bytes', m.required_bytes), limitBytes: int('capacity_range.limit_bytes', m.limit_bytes) }
}

export function contentSourceFromWire(value: unknown): T.ContentSource | undefined {
  const m = msg(value)
  const snapshot = msg(m?.snapshot)
  const volume = msg(m?.volume)
  if (snapshot !== undefined) return { kind: 'snapshot', snapshotId: str(snapshot.snapshot_id) }
  if (volume !== undefined) return { kind: 'volume', volumeId: str(volume.volume_id) }
  return undefined
}

function contentSourceToWire(source: T.ContentSource): Wire {
  return source.kind === 'snapshot' ? { snapshot: { snapshot_id: source.snapshotId } } : { volume: { volume_id: source.volumeId } }
}

function topologyFromWire(value: unknown): T.Topology | undefined {
  const m = msg(value)
  return m === undefined ? undefined : { segments: strMap(m.segments) }
}

function topologiesFromWire(value: unknown): T.Topology[] {
  return list(value).map(topologyFromWire).filter((t): t is T.Topology => t !== undefined)
}

export function volumeToWire(v: T.CsiVolume): Wire {
  const wire: Wire = {
    capacity_bytes: v.capacityBytes,
    volume_id: v.volumeId,
    volume_context: v.volumeContext,
    accessible_topology: v.accessibleTopology.map((t) => ({ segments: t.segments })),
  }
  if (v.contentSource !== undefined) wire.content_source = contentSourceToWire(v.contentSource)
  return wire
}

export function snapshotToWire(s: T.CsiSnapshot): Wire {
  const ms = Date.parse(s.creationTime)
  const seconds = Math.floor(ms / 1000)
  return {
    size_bytes: s.sizeBytes,
    snapshot_id: s.snapshotId,
    source_volume_id: s.sourceVolumeId,
    creation_time: { seconds, nanos: (ms - seconds * 1000) * 1e6 },
    ready_to_use: s.readyToUse,
  }
}

function statusToWire(s: T.VolumeStatus): Wire {
  return { published_node_ids: s.publishedNodeIds, volume_condition: { abnormal: s.volumeCondition.abnormal, message: s.volumeCondition.message } }
}

// ---------------------------------------------------------------- identity

export function pluginInfoToWire(info: T.PluginInfo): Wire {
  return { name: info.name, vendor_version: info.vendorVersion, manifest: info.manifest }
}

export function pluginCapabilitiesToWire(caps: T.PluginCapability[]): Wire {
  return {
    capabilities: caps.map((c) => (c.kind === 'service' ? { service: { type: c.type } } : { volume_expansion: { type: c.type } })),
  }
}

// ---------------------------------------------------------------- controller requests

export function createVolumeFromWire(w: Wire): T.CreateVolumeRequest {
  const topo = msg(w.accessibility_requirements)
  return {
    name: str(w.name),
    capacityRange: capacityRangeFromWire(w.capacity_range),
    volumeCapabilities: capabilitiesFromWire(w.volume_capabilities),
    parameters: strMap(w.parameters),
    secrets: strMap(w.secrets),
    contentSource: contentSourceFromWire(w.volume_content_source),
    accessibilityRequirements: topo === undefined ? undefined : { requisite: topologiesFromWire(topo.requisite), preferred: topologiesFromWire(topo.preferred) },
  }
}

export function deleteVolumeFromWire(w: Wire): T.DeleteVolumeRequest {
  return { volumeId: str(w.volume_id), secrets: strMap(w.secrets) }
}

export function publishFromWire(w: Wire): T.ControllerPublishVolumeRequest {
  return {
    volumeId: str(w.volume_id),
    nodeId: str(w.node_id),
    volumeCapability: capabilityFromWire(w.volume_capability),
    readonly: w.readonly === true,
    secrets: strMap(w.secrets),
    volumeContext: strMap(w.volume_context),
  }
}

export function unpublishFromWire(w: Wire): T.ControllerUnpublishVolumeRequest {
  return { volumeId: str(w.volume_id), nodeId: str(w.node_id), secrets: strMap(w.secrets) }
}

export function validateFromWire(w: Wire): T.ValidateVolumeCapabilitiesRequest {
  return {
    volumeId: str(w.volume_id),
    volumeContext: strMap(w.volume_context),
    volumeCapabilities: capabilitiesFromWire(w.volume_capabilities),
    parameters: strMap(w.parameters),
    secrets: strMap(w.secrets),
  }
}

export function validateToWire(r: T.ValidateVolumeCapabilitiesResponse): Wire {
  if (r.confirmed === undefined) return { message: r.message }
  return {
    confirmed: {
      volume_context: r.confirmed.volumeContext,
      volume_capabilities: r.confirmed.volumeCapabilities.map(capabilityToWire),
      parameters: r.confirmed.parameters,
    },
    message: r.message,
  }
}

export function listFromWire(w: Wire): T.ListRequest {
  return { maxEntries: int('max_entries', w.max_entries), startingToken: str(w.starting_token) }
}

export function listVolumesToWire(r: T.ListVolumesResponse): Wire {
  return { entries: r.entries.map((e) => ({ volume: volumeToWire(e.volume), status: statusToWire(e.status) })), next_token: r.nextToken }
}

export function getCapacityFromWire(w: Wire): T.GetCapacityRequest {
  return { volumeCapabilities: capabilitiesFromWire(w.volume_capabilities), parameters: strMap(w.parameters), accessibleTopology: topologyFromWire(w.accessible_topology) }
}

export function getCapacityToWire(r: T.GetCapacityResponse): Wire {
  const wire: Wire = { available_capacity: r.availableCapacity }
  if (r.maximumVolumeSize !== undefined) wire.maximum_volume_size = { value: r.maximumVolumeSize }
  if (r.minimumVolumeSize !== undefined) wire.minimum_volume_size = { value: r.minimumVolumeSize }
  return wire
}

export function controllerCapabilitiesToWire(caps: T.ControllerCapability[]): Wire {
  return { capabilities: caps.map((type) => ({ rpc: { type } })) }
}

export function createSnapshotFromWire(w: Wire): T.CreateSnapshotRequest {
  return { sourceVolumeId: str(w.source_volume_id), name: str(w.name), secrets: strMap(w.secrets), parameters: strMap(w.parameters) }
}

export function deleteSnapshotFromWire(w: Wire): T.DeleteSnapshotRequest {
  return { snapshotId: str(w.snapshot_id), secrets: strMap(w.secrets) }
}

export function listSnapshotsFromWire(w: Wire): T.ListSnapshotsRequest {
  return { ...listFromWire(w), sourceVolumeId: str(w.source_volume_id), snapshotId: str(w.snapshot_id), secrets: strMap(w.secrets) }
}

export function listSnapshotsToWire(r: T.ListSnapshotsResponse): Wire {
  return { entries: r.entries.map((s) => ({ snapshot: snapshotToWire(s) })), next_token: r.nextToken }
}

export function expandFromWire(w: Wire): T.ControllerExpandVolumeRequest {
  return {
    volumeId: str(w.volume_id),
    capacityRange: capacityRangeFromWire(w.capacity_range),
    secrets: strMap(w.secrets),
    volumeCapability: capabilityFromWire(w.volume_capability),
  }
}

export function expandToWire(r: T.ControllerExpandVolumeResponse): Wire {
  return { capacity_bytes: r.capacityBytes, node_expansion_required: r.nodeExpansionRequired }
}

export function getVolumeToWire(r: { volume: T.CsiVolume; status: T.VolumeStatus }): Wire {
  return { volume: volumeToWire(r.volume), status: statusToWire(r.status) }
}

// ---------------------------------------------------------------- node

export function nodeStageFromWire(w: Wire): T.NodeStageVolumeRequest {
  return {
    volumeId: str(w.volume_id),
    publishContext: strMap(w.publish_context),
    stagingTargetPath: str(w.staging_target_path),
    volumeCapability: capabilityFromWire(w.volume_capability),
    secrets: strMap(w.secrets),
    volumeContext: strMap(w.volume_context),
  }
}

export function nodeUnstageFromWire(w: Wire): T.NodeUnstageVolumeRequest {
  return { volumeId: str(w.volume_id), stagingTargetPath: str(w.staging_target_path) }
}

export function nodePublishFromWire(w: Wire): T.NodePublishVolumeRequest {
  return {
    volumeId: str(w.volume_id),
    publishContext: strMap(w.publish_context),
    stagingTargetPath: str(w.staging_target_path),
    targetPath: str(w.target_path),
    volumeCapability: capabilityFromWire(w.volume_capability),
    readonly: w.readonly === true,
    secrets: strMap(w.secrets),
    volumeContext: strMap(w.volume_context),
  }
}

export function nodeUnpublishFromWire(w: Wire): T.NodeUnpublishVolumeRequest {
  return { volumeId: str(w.volume_id), targetPath: str(w.target_path) }
}

export function nodeStatsFromWire(w: Wire): T.NodeGetVolumeStatsRequest {
  return { volumeId: str(w.volume_id), volumePath: str(w.volume_path), stagingTargetPath: str(w.staging_target_path) }
}

export function nodeStatsToWire(r: T.NodeGetVolumeStatsResponse): Wire {
  const wire: Wire = { usage: r.usage.map((u) => ({ unit: u.unit, available: u.available, total: u.total, used: u.used })) }
  if (r.volumeCondition !== undefined) wire.volume_condition = { abnormal: r.volumeCondition.abnormal, message: r.volumeCondition.message }
  return wire
}

export function nodeExpandFromWire(w: Wire): T.NodeExpandVolumeRequest {
  return {
    volumeId: str(w.volume_id),
    volumePath: str(w.volume_path),
    capacityRange: capacityRangeFromWire(w.capacity_range),
    stagingTargetPath: str(w.staging_target_path),
    volumeCapability: capabilityFromWire(w.volume_capability),
    secrets: strMap(w.secrets),
  }
}

export function nodeCapabilitiesToWire(caps: T.NodeCapability[]): Wire {
  return { capabilities: caps.map((type) => ({ rpc: { type } })) }
}

export function nodeInfoToWire(info: T.NodeInfo): Wire {
  const wire: Wire = { node_id: info.nodeId, max_volumes_per_node: info.maxVolumesPerNode }
  if (info.accessibleTopology !== undefined) wire.accessible_topology = { segments: info.accessibleTopology.segments }
  return wire
}
