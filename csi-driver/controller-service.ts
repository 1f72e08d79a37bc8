/**
 * The CSI Controller service over a ControlPlane. Each RPC validates its request
 * first (INVALID_ARGUMENT before any read), takes the per-volume lock (a concurrent
 * call on the same volume gets ABORTED), then acts. Ids are control-plane object
 * names; see validation.ts for how CSI names map to them.
 */
import { InvalidArgumentError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { LIST_LIMIT_MAX, NotFoundError, type AttachmentAccess, type ClusterMap, type ControlPlane, type Snapshot, type Volume } from '../control-plane/types.js'
import { VOLUME_SIZE_ALIGNMENT_BYTES, VOLUME_SIZE_MAX_BYTES } from '../control-plane/validate.js'
import type { VolumeEngines } from './engines.js'
import {
  CapacityOutOfRangeError,
  CsiAlreadyExistsError,
  CsiFailedPreconditionError,
  CsiNotFoundError,
  InvalidStartingTokenError,
  TopologyUnsatisfiableError,
} from './errors.js'
import { KeyedLocks, snapshotKey, volumeKey } from './locks.js'
import type * as T from './types.js'
import { capabilityProblem, isCoParameter, isObjectName, isSingleNodeMode, objectNameFor, requireCapabilities, sizeFits, sizeForRange } from './validation.js'

/** Topology segment naming a block store; a requisite topology or GetCapacity naming another store excludes this one. */
export const TOPOLOGY_BLOCK_STORE_KEY = 'topology.cairn.dev/block-store'
/** publish_context keys handed to the node service by ControllerPublishVolume. */
export const PUBLISH_CONTEXT = { epoch: 'cairn.dev/epoch', nodeId: 'cairn.dev/node-id', readOnly: 'cairn.dev/read-only' } as const
/** StorageClass parameters CreateVolume understands. */
export const PARAMETERS = { storagePolicy: 'storagePolicy', blockStore: 'blockStore' } as const

export interface ControllerServiceInit {
  /** Block store of volumes whose parameters name none. @default 'default' */
  defaultBlockStore?: string
  /** Storage policy of volumes whose parameters name none. @default 'default' */
  defaultStoragePolicy?: string
  /** Size of a volume created without a capacity range (or from a source, at least the source's). @default 1 GiB */
  defaultVolumeSizeBytes?: number
}

/**
 * Whether a node id names a node that runs Cairn's node plugin: true known, false unknown
 * (ControllerPublish answers NOT_FOUND); throws when it cannot tell (the call fails, retryable).
 */
export type NodeDirectory = (nodeId: string) => Promise<boolean>

export interface ControllerServiceComponents {
  controlPlane: ControlPlane
  engines: VolumeEngines
  locks: KeyedLocks
  logger: Logger
  /** Checks node ids on publish. @default none: every node id is accepted */
  nodes?: NodeDirectory
}

const GiB = 1024 ** 3

export class CsiControllerService implements T.ControllerService {
  private readonly defaultBlockStore: string
  private readonly defaultStoragePolicy: string
  private readonly defaultSizeBytes: number

  constructor(
    init: ControllerServiceInit,
    private readonly components: ControllerServiceComponents,
  ) {
    this.defaultBlockStore = init.defaultBlockStore ?? 'default'
    this.defaultStoragePolicy = init.defaultStoragePolicy ?? 'default'
    this.defaultSizeBytes = init.defaultVolumeSizeBytes ?? GiB
  }

  private get cp(): ControlPlane {
    return this.components.controlPlane
  }

  // ---------------------------------------------------------------- volumes

  async createVolume(req: T.CreateVolumeRequest): Promise<T.CsiVolume> {
    const volumeId = objectNameFor('name', req.name, 'vol')
    requireCapabilities('volume_capabilities', req.volumeCapabilities, req.contentSource?.kind === 'snapshot')
    const params = this.volumeParameters(req.parameters)
    sizeForRange(req.capacityRange, this.defaultSizeBytes) // Refuses a bad range before any read.
    if (req.contentSource !== undefined) requireSourceId(req.contentSource)
    return this.components.locks.withLocks([volumeKey(volumeId)], async () => {
      const existing = await this.findVolume(volumeId)
      if (existing !== undefined) return this.existingVolumeFor(existing, req, params)
      const source = await this.resolveSource(req.contentSource)
      const spec = this.specFor(req, params, source)
      this.checkTopology(req.accessibilityRequirements, spec.blockStore)
      if (source?.kind === 'volume') await this.components.engines.checkpoint(source.volume)
      const created = await this.cp.createVolume({ name: volumeId, ...spec })
      this.components.logger.info({ volumeId, sizeBytes: created.sizeBytes, source: created.source }, 'volume created')
      return csiVolume(created)
    })
  }

  async deleteVolume(req: T.DeleteVolumeRequest): Promise<void> {
    const volumeId = required('volume_id', req.volumeId)
    // An id this driver could never have issued names nothing: deleting nothing succeeds.
    if (!isObjectName(volumeId)) return
    await this.components.locks.withLocks([volumeKey(volumeId)], () => this.cp.deleteVolume(volumeId))
  }

  async controllerPublishVolume(req: T.ControllerPublishVolumeRequest): Promise<{ publishContext: Record<string, string> }> {
    const volumeId = required('volume_id', req.volumeId)
    const nodeId = required('node_id', req.nodeId)
    if (req.volumeCapability === undefined) throw new InvalidArgumentError('volume_capability is required')
    const cap = req.volumeCapability
    // Everything but the snapshot-only mode can be judged before reading the volume.
    const invalid = capabilityProblem(cap, true)
    if (invalid !== undefined) throw new InvalidArgumentError(`volume_capability: ${invalid}`)
    return this.components.locks.withLocks([volumeKey(volumeId)], async () => {
      const volume = await this.mustGetVolume(volumeId)
      const problem = capabilityProblem(cap, volume.source !== undefined && 'snapshot' in volume.source)
      if (problem !== undefined) throw new InvalidArgumentError(`volume_capability: ${problem}`)
      if (this.components.nodes !== undefined && !(await this.components.nodes(nodeId))) throw new CsiNotFoundError(`node ${nodeId} not found`)
      if (cap.accessMode === 'MULTI_NODE_READER_ONLY') return this.publishReader(volume, nodeId, req)
      return this.publishWriter(volume, nodeId, { mode: cap.accessMode, readOnly: req.readonly === true })
    })
  }

  async controllerUnpublishVolume(req: T.ControllerUnpublishVolumeRequest): Promise<void> {
    const volumeId = required('volume_id', req.volumeId)
    // node_id is OPTIONAL here: unset means "from every node it is published to".
    const nodeId = req.nodeId
    if (!isObjectName(volumeId)) return
    await this.components.locks.withLocks([volumeKey(volumeId)], async () => {
      const volume = await this.findVolume(volumeId)
      // Gone or never published: nothing to undo.
      if (volume === undefined) return
      const readers = volume.status.readers.filter((r) => nodeId === '' || r === nodeId)
      for (const reader of readers) await this.cp.removeReader(volumeId, reader)
      if (readers.length > 0) this.components.logger.info({ volumeId, readers }, 'read-only publish removed')
      const attachment = volume.status.attachment
      // Held by another node (or nobody): nothing of this node's to release.
      if (attachment === null || (nodeId !== '' && attachment.nodeId !== nodeId)) return
      // The engine releases on a clean detach, so a holder still recorded here went away without one
      // (its node died, or its engine is still stopping): its head may lag its journal.
      await this.cp.releaseAttachment(volumeId, attachment.nodeId, attachment.epoch, { headCurrent: false })
      this.components.logger.info({ volumeId, nodeId: attachment.nodeId, epoch: attachment.epoch }, 'volume unpublished; its head is marked for recovery')
    })
  }

  async validateVolumeCapabilities(req: T.ValidateVolumeCapabilitiesRequest): Promise<T.ValidateVolumeCapabilitiesResponse> {
    const volumeId = required('volume_id', req.volumeId)
    if (req.volumeCapabilities.length === 0) throw new InvalidArgumentError('volume_capabilities is required')
    const volume = await this.mustGetVolume(volumeId)
    const fromSnapshot = volume.source !== undefined && 'snapshot' in volume.source
    for (const cap of req.volumeCapabilities) {
      const problem = capabilityProblem(cap, fromSnapshot)
      if (problem !== undefined) return { confirmed: undefined, message: problem }
    }
    const unknown = Object.keys(req.parameters).filter((k) => !isCoParameter(k) && !Object.values(PARAMETERS).includes(k as never))
    if (unknown.length > 0) return { confirmed: undefined, message: `unknown parameters: ${unknown.join(', ')}` }
    return { confirmed: { volumeContext: req.volumeContext, volumeCapabilities: req.volumeCapabilities, parameters: req.parameters }, message: '' }
  }

  async listVolumes(req: T.ListRequest): Promise<T.ListVolumesResponse> {
    const limit = pageLimit(req.maxEntries)
    const page = await listPage(() => this.cp.listVolumes({ limit, continue: req.startingToken }))
    return { entries: page.items.map((v) => ({ volume: csiVolume(v), status: volumeStatus(v) })), nextToken: page.continue ?? '' }
  }

  async controllerGetVolume(req: { volumeId: string }): Promise<{ volume: T.CsiVolume; status: T.VolumeStatus }> {
    const volume = await this.mustGetVolume(required('volume_id', req.volumeId))
    return { volume: csiVolume(volume), status: volumeStatus(volume) }
  }

  async controllerExpandVolume(req: T.ControllerExpandVolumeRequest): Promise<T.ControllerExpandVolumeResponse> {
    const volumeId = required('volume_id', req.volumeId)
    if (req.capacityRange === undefined) throw new InvalidArgumentError('capacity_range is required')
    const range = req.capacityRange
    const sizeBytes = sizeForRange(range, VOLUME_SIZE_ALIGNMENT_BYTES)
    if (req.volumeCapability !== undefined) {
      const problem = capabilityProblem(req.volumeCapability, true)
      if (problem !== undefined) throw new InvalidArgumentError(`volume_capability: ${problem}`)
    }
    // A raw block device has no filesystem to grow; a mount (or an unknown use) does.
    const nodeExpansionRequired = req.volumeCapability?.accessType?.kind !== 'block'
    return this.components.locks.withLocks([volumeKey(volumeId)], async () => {
      const volume = await this.mustGetVolume(volumeId)
      if (sizeFits(volume.sizeBytes, range)) return { capacityBytes: volume.sizeBytes, nodeExpansionRequired }
      if (sizeBytes < volume.sizeBytes) {
        throw new CapacityOutOfRangeError(`volume ${volumeId} is ${volume.sizeBytes} bytes; volumes only grow, limit_bytes ${range.limitBytes} is below that`)
      }
      const grown = await this.cp.resizeVolume(volumeId, sizeBytes)
      await this.components.engines.resize(grown)
      this.components.logger.info({ volumeId, from: volume.sizeBytes, to: grown.sizeBytes }, 'volume expanded')
      return { capacityBytes: grown.sizeBytes, nodeExpansionRequired }
    })
  }

  async getCapacity(req: T.GetCapacityRequest): Promise<T.GetCapacityResponse> {
    for (const cap of req.volumeCapabilities) {
      const problem = capabilityProblem(cap, true)
      if (problem !== undefined) throw new InvalidArgumentError(`volume_capabilities: ${problem}`)
    }
    const params = this.volumeParameters(req.parameters)
    const bounds = { maximumVolumeSize: VOLUME_SIZE_MAX_BYTES, minimumVolumeSize: VOLUME_SIZE_ALIGNMENT_BYTES }
    const topologyStore = req.accessibleTopology?.segments[TOPOLOGY_BLOCK_STORE_KEY]
    if (topologyStore !== undefined && topologyStore !== params.blockStore) return { availableCapacity: 0, ...bounds }
    const [map, policy] = await Promise.all([
      this.cp.getClusterMap(params.blockStore).catch(ifNotFound(undefined)),
      this.cp.getStoragePolicy(params.storagePolicy).catch(ifNotFound(undefined)),
    ])
    if (map === undefined || policy === undefined) return { availableCapacity: 0, ...bounds }
    return { availableCapacity: usableCapacityBytes(map, policy.dataShards, policy.parityShards), ...bounds }
  }

  async controllerGetCapabilities(): Promise<T.ControllerCapability[]> {
    return [
      'CREATE_DELETE_VOLUME', 'PUBLISH_UNPUBLISH_VOLUME', 'LIST_VOLUMES', 'GET_CAPACITY', 'CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS',
      'CLONE_VOLUME', 'PUBLISH_READONLY', 'EXPAND_VOLUME', 'LIST_VOLUMES_PUBLISHED_NODES', 'VOLUME_CONDITION', 'GET_VOLUME',
      'SINGLE_NODE_MULTI_WRITER',
    ]
  }

  // ---------------------------------------------------------------- snapshots

  async createSnapshot(req: T.CreateSnapshotRequest): Promise<T.CsiSnapshot> {
    const snapshotId = objectNameFor('name', req.name, 'snap')
    const sourceId = required('source_volume_id', req.sourceVolumeId)
    const unknown = Object.keys(req.parameters).filter((k) => !isCoParameter(k))
    if (unknown.length > 0) throw new InvalidArgumentError(`parameters: unknown keys ${unknown.join(', ')}`)
    return this.components.locks.withLocks([snapshotKey(snapshotId), volumeKey(sourceId)], async () => {
      const existing = await this.cp.getSnapshot(snapshotId).catch(ifNotFound(undefined))
      if (existing !== undefined) {
        if (existing.volume !== sourceId) throw new CsiAlreadyExistsError(`snapshot ${req.name} exists for volume ${existing.volume}, not ${sourceId}`)
        return csiSnapshot(existing)
      }
      const volume = await this.mustGetVolume(sourceId)
      await this.components.engines.checkpoint(volume)
      const created = await this.cp.createSnapshot({ name: snapshotId, volume: sourceId })
      this.components.logger.info({ snapshotId, sourceId, rootCid: created.status.rootCid }, 'snapshot created')
      return csiSnapshot(created)
    })
  }

  async deleteSnapshot(req: T.DeleteSnapshotRequest): Promise<void> {
    const snapshotId = required('snapshot_id', req.snapshotId)
    if (!isObjectName(snapshotId)) return
    await this.components.locks.withLocks([snapshotKey(snapshotId)], () => this.cp.deleteSnapshot(snapshotId))
  }

  async listSnapshots(req: T.ListSnapshotsRequest): Promise<T.ListSnapshotsResponse> {
    const limit = pageLimit(req.maxEntries)
    if (req.snapshotId !== '') {
      // One snapshot asked for by id: it is the whole list, or the list is empty.
      const snap = isObjectName(req.snapshotId) ? await this.cp.getSnapshot(req.snapshotId).catch(ifNotFound(undefined)) : undefined
      const matches = snap !== undefined && (req.sourceVolumeId === '' || snap.volume === req.sourceVolumeId)
      return { entries: matches ? [csiSnapshot(snap)] : [], nextToken: '' }
    }
    if (req.sourceVolumeId !== '' && !isObjectName(req.sourceVolumeId)) return { entries: [], nextToken: '' }
    const volume = req.sourceVolumeId === '' ? undefined : req.sourceVolumeId
    const page = await listPage(() => this.cp.listSnapshots({ limit, continue: req.startingToken, volume }))
    return { entries: page.items.map(csiSnapshot), nextToken: page.continue ?? '' }
  }

  // ---------------------------------------------------------------- helpers

  private volumeParameters(parameters: Record<string, string>): { blockStore: string; storagePolicy: string; explicit: Set<string> } {
    const known: string[] = Object.values(PARAMETERS)
    const unknown = Object.keys(parameters).filter((k) => !known.includes(k) && !isCoParameter(k))
    if (unknown.length > 0) throw new InvalidArgumentError(`parameters: unknown keys ${unknown.join(', ')} (known: ${known.join(', ')})`)
    for (const key of known) {
      const value = parameters[key]
      if (value !== undefined && !isObjectName(value)) throw new InvalidArgumentError(`parameters.${key}: ${JSON.stringify(value)} is not a valid name`)
    }
    return {
      blockStore: parameters[PARAMETERS.blockStore] ?? this.defaultBlockStore,
      storagePolicy: parameters[PARAMETERS.storagePolicy] ?? this.defaultStoragePolicy,
      explicit: new Set(Object.keys(parameters).filter((k) => known.includes(k))),
    }
  }

  private async resolveSource(source: T.ContentSource | undefined): Promise<ResolvedSource | undefined> {
    if (source === undefined) return undefined
    if (source.kind === 'snapshot') {
      const snapshot = isObjectName(source.snapshotId) ? await this.cp.getSnapshot(source.snapshotId).catch(ifNotFound(undefined)) : undefined
      if (snapshot === undefined) throw new CsiNotFoundError(`source snapshot ${source.snapshotId} not found`)
      if (!snapshot.status.readyToUse) throw new CsiFailedPreconditionError(`source snapshot ${source.snapshotId} is not ready to use`)
      return { kind: 'snapshot', snapshot, sizeBytes: snapshot.status.sizeBytes, blockStore: snapshot.blockStore, storagePolicy: snapshot.storagePolicy }
    }
    const volume = isObjectName(source.volumeId) ? await this.findVolume(source.volumeId) : undefined
    if (volume === undefined) throw new CsiNotFoundError(`source volume ${source.volumeId} not found`)
    return { kind: 'volume', volume, sizeBytes: volume.sizeBytes, blockStore: volume.blockStore, storagePolicy: volume.storagePolicy }
  }

  /** The control-plane spec for a new volume; a source supplies the store and policy its chunks use. */
  private specFor(req: T.CreateVolumeRequest, params: VolumeParams, source: ResolvedSource | undefined) {
    const fallback = Math.max(this.defaultSizeBytes, source?.sizeBytes ?? 0)
    const sizeBytes = sizeForRange(req.capacityRange, fallback)
    if (source === undefined) return { blockStore: params.blockStore, storagePolicy: params.storagePolicy, sizeBytes }
    if (sizeBytes < source.sizeBytes) {
      throw new CapacityOutOfRangeError(`the source is ${source.sizeBytes} bytes, more than the ${sizeBytes} bytes the capacity range allows`)
    }
    for (const key of ['blockStore', 'storagePolicy'] as const) {
      if (params.explicit.has(key) && params[key] !== source[key]) {
        throw new InvalidArgumentError(`parameters.${key} ${params[key]} differs from the source's ${source[key]}; a restore or clone reads the same chunks`)
      }
    }
    const ref = source.kind === 'snapshot' ? { snapshot: source.snapshot.name } : { volume: source.volume.name }
    return { blockStore: source.blockStore, storagePolicy: source.storagePolicy, sizeBytes, source: ref }
  }

  /** CreateVolume's idempotent answer for a name that exists, or ALREADY_EXISTS when the request does not match it. */
  private existingVolumeFor(v: Volume, req: T.CreateVolumeRequest, params: VolumeParams): T.CsiVolume {
    const problems: string[] = []
    if (!sizeFits(v.sizeBytes, req.capacityRange)) problems.push(`its size ${v.sizeBytes} is outside the capacity range`)
    if (!sameSource(v, req.contentSource)) problems.push('its content source differs')
    if (req.contentSource === undefined && (v.blockStore !== params.blockStore || v.storagePolicy !== params.storagePolicy)) {
      problems.push(`it is in ${v.blockStore}/${v.storagePolicy}`)
    }
    if (problems.length > 0) throw new CsiAlreadyExistsError(`volume ${req.name} exists and does not match the request: ${problems.join('; ')}`)
    return csiVolume(v)
  }

  private checkTopology(requirement: T.TopologyRequirement | undefined, blockStore: string): void {
    if (requirement === undefined || requirement.requisite.length === 0) return
    const ok = requirement.requisite.some((t) => {
      const store = t.segments[TOPOLOGY_BLOCK_STORE_KEY]
      return store === undefined || store === blockStore
    })
    if (!ok) throw new TopologyUnsatisfiableError(`block store ${blockStore} is not accessible from any requisite topology`)
  }

  private async publishReader(volume: Volume, nodeId: string, req: T.ControllerPublishVolumeRequest): Promise<{ publishContext: Record<string, string> }> {
    if (!req.readonly) throw new InvalidArgumentError('MULTI_NODE_READER_ONLY requires readonly')
    // Readers write nothing, so they take no epoch; a writer elsewhere would change what they read.
    const held = volume.status.attachment
    if (held !== null && held.nodeId === nodeId) {
      throw new CsiAlreadyExistsError(`volume ${volume.name} is already published for writing on node ${nodeId}, not read-only`)
    }
    if (held !== null) throw new CsiFailedPreconditionError(`volume ${volume.name} is published for writing on ${held.nodeId}`)
    if (!volume.status.readers.includes(nodeId)) {
      await this.cp.addReader(volume.name, nodeId)
      this.components.logger.info({ volumeId: volume.name, nodeId }, 'volume published read-only')
    }
    return { publishContext: { [PUBLISH_CONTEXT.readOnly]: 'true' } }
  }

  private async publishWriter(volume: Volume, nodeId: string, access: AttachmentAccess): Promise<{ publishContext: Record<string, string> }> {
    const held = volume.status.attachment
    const readers = volume.status.readers
    const mode = access.mode as T.AccessMode
    if (readers.includes(nodeId)) {
      throw new CsiAlreadyExistsError(`volume ${volume.name} is already published read-only on node ${nodeId}, not for ${mode}`)
    }
    // The same node again with another capability (spec: ALREADY_EXISTS). An attachment taken by an engine on its own records no access.
    if (held !== null && held.nodeId === nodeId && held.access !== undefined && (held.access.mode !== access.mode || held.access.readOnly !== access.readOnly)) {
      throw new CsiAlreadyExistsError(
        `volume ${volume.name} is already published on node ${nodeId} as ${held.access.mode}${held.access.readOnly ? ' read-only' : ''}, not ${mode}${access.readOnly ? ' read-only' : ''}`,
      )
    }
    // A writer would change the head under the readers' feet (spec: FAILED_PRECONDITION, published elsewhere).
    if (readers.length > 0) throw new CsiFailedPreconditionError(`volume ${volume.name} is published read-only on ${readers.join(', ')}; unpublish it there first`)
    let attached = volume
    if (held !== null && held.nodeId !== nodeId && isSingleNodeMode(mode)) {
      throw new CsiFailedPreconditionError(`volume ${volume.name} is published on node ${held.nodeId}; unpublish it there first`)
    }
    if (held === null || held.nodeId !== nodeId) {
      attached = await this.cp.acquireEpoch(volume.name, nodeId, volume.status.epoch, access)
      this.components.logger.info({ volumeId: volume.name, nodeId, epoch: attached.status.epoch }, 'volume published')
    }
    const epoch = attached.status.attachment?.epoch ?? attached.status.epoch
    return { publishContext: { [PUBLISH_CONTEXT.epoch]: String(epoch), [PUBLISH_CONTEXT.nodeId]: nodeId } }
  }

  private async findVolume(volumeId: string): Promise<Volume | undefined> {
    return this.cp.getVolume(volumeId).catch(ifNotFound(undefined))
  }

  private async mustGetVolume(volumeId: string): Promise<Volume> {
    const volume = isObjectName(volumeId) ? await this.findVolume(volumeId) : undefined
    if (volume === undefined) throw new CsiNotFoundError(`volume ${volumeId} not found`)
    return volume
  }
}

type VolumeParams = { blockStore: string; storagePolicy: string; explicit: Set<string> }
type ResolvedSource =
  | { kind: 'snapshot'; snapshot: Snapshot; sizeBytes: number; blockStore: string; storagePolicy: string }
  | { kind: 'volume'; volume: Volume; sizeBytes: number; blockStore: string; storagePolicy: string }

function required(field: string, value: string): string {
  if (value === '') throw new InvalidArgumentError(`${field} is required`)
  return value
}

function requireSourceId(source: T.ContentSource): void {
  if (source.kind === 'snapshot') required('volume_content_source.snapshot.snapshot_id', source.snapshotId)
  else required('volume_content_source.volume.volume_id', source.volumeId)
}

/** max_entries: 0 means "the plugin's choice"; larger than a page is clamped (the CO follows next_token). */
function pageLimit(maxEntries: number): number {
  if (maxEntries < 0) throw new InvalidArgumentError(`max_entries must not be negative, got ${maxEntries}`)
  return maxEntries === 0 ? LIST_LIMIT_MAX : Math.min(maxEntries, LIST_LIMIT_MAX)
}

/** Runs a list call; a token the control plane cannot parse is ABORTED, as the spec mandates for a bad starting_token. */
async function listPage<P>(list: () => Promise<P>): Promise<P> {
  try {
    return await list()
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidStartingTokenError(`starting_token is not valid: ${err.message}`, { cause: err })
    throw err
  }
}

function ifNotFound<T>(fallback: T): (err: unknown) => T {
  return (err) => {
    if (err instanceof NotFoundError) return fallback
    throw err
  }
}

function sameSource(v: Volume, source: T.ContentSource | undefined): boolean {
  if (source === undefined) return v.source === undefined
  if (source.kind === 'snapshot') return v.source !== undefined && 'snapshot' in v.source && v.source.snapshot === source.snapshotId
  return v.source !== undefined && 'volume' in v.source && v.source.volume === source.volumeId
}

/**
 * Usable bytes of a block store: active members' weights are their allocated capacity in
 * GiB (the operator's convention), of which k/(k+m) holds data. Volumes are thin, so
 * this is what the store can hold, not what is free.
 */
export function usableCapacityBytes(map: ClusterMap, dataShards: number, parityShards: number): number {
  const rawBytes = map.members.filter((m) => m.state === 'active').reduce((sum, m) => sum + m.weight * GiB, 0)
  return Math.floor((rawBytes * dataShards) / (dataShards + parityShards))
}

function csiVolume(v: Volume): T.CsiVolume {
  let contentSource: T.ContentSource | undefined
  if (v.source !== undefined) contentSource = 'snapshot' in v.source ? { kind: 'snapshot', snapshotId: v.source.snapshot } : { kind: 'volume', volumeId: v.source.volume }
  return {
    capacityBytes: v.sizeBytes,
    volumeId: v.name,
    volumeContext: { 'cairn.dev/block-store': v.blockStore, 'cairn.dev/storage-policy': v.storagePolicy },
    contentSource,
    // Any node running the node plugin can attach any volume over the network: no constraint (ADR 0016).
    accessibleTopology: [],
  }
}

function volumeStatus(v: Volume): T.VolumeStatus {
  const health = v.status.health
  const message = { unknown: 'health not reported yet', healthy: 'healthy', degraded: 'degraded: some shards need repair', failed: 'failed: data unavailable' }[health]
  return {
    // The writer and every read-only publish: what the CO reconciles its attachments against.
    publishedNodeIds: [...new Set([...(v.status.attachment === null ? [] : [v.status.attachment.nodeId]), ...v.status.readers])],
    volumeCondition: { abnormal: health === 'degraded' || health === 'failed', message },
  }
}

function csiSnapshot(s: Snapshot): T.CsiSnapshot {
  return { sizeBytes: s.status.sizeBytes, snapshotId: s.name, sourceVolumeId: s.volume, creationTime: s.status.creationTime, readyToUse: s.status.readyToUse }
}
