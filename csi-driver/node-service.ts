/**
 * The CSI Node service: stage (engine + block device + filesystem), publish (bind
 * mounts), stats, expansion, info. Requests are validated first, then one call per
 * volume runs at a time (a concurrent one gets ABORTED), and every operation is
 * idempotent against the saved state and /proc/self/mountinfo.
 */
import { rm, rmdir, stat } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { CairnError, InvalidArgumentError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import { AdminClient } from '../engine/host/admin-client.js'
import { detectAttachMode, setLoopSizeLimit, type AttachMode } from './attach/block-device.js'
import { CommandFailedError } from './attach/command.js'
import { engineReady, type EngineLaunchInit } from './attach/engine-process.js'
import { cleanupVolume, recoverVolumes, stageVolume, type StageStep, type StagerComponents } from './attach/volume-stager.js'
import { PUBLISH_CONTEXT } from './controller-service.js'
import { CsiAlreadyExistsError, CsiFailedPreconditionError, CsiNotFoundError } from './errors.js'
import { KeyedLocks } from './locks.js'
import { bindMount, blockDeviceSizeBytes, filesystemUsage, FS_TYPES, growFilesystem, mountedAt, unmountAll, type FsType } from './mounts/filesystem.js'
import { NodeStateStore, type PublishRecord, type VolumeAccess, type VolumeState } from './state.js'
import type {
  AccessMode, NodeCapability, NodeExpandVolumeRequest, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodeInfo,
  NodePublishVolumeRequest, NodeService, NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability, VolumeCondition,
} from './types.js'

/** Topology key naming the node a volume's engine runs on. */
export const TOPOLOGY_NODE_KEY = 'topology.cairn.dev/node'

/**
 * The device cannot show the volume's new size while it stays attached: nbdfuse fixes
 * its file's size at connect, and this volume grew past the size its export
 * advertised (or was staged before exports advertised a ceiling). Staging it again
 * shows the new size.
 */
export class OnlineExpansionUnavailableError extends CairnError {
  override readonly name = 'OnlineExpansionUnavailableError'
  readonly kind = 'failed-precondition'
}

export interface NodeServiceDeps {
  /** This node's id (NodeGetInfo, the attachment recorded by the engine). */
  nodeId: string
  /** Where per-volume state, engine sockets and FUSE mounts live; must survive a plugin restart. */
  stateDir: string
  /** How to start `cairn engine` for a volume (nodeId is filled in from `nodeId`). */
  engine: Omit<EngineLaunchInit, 'nodeId'>
  /** @default 0 (no limit) */
  maxVolumesPerNode?: number
  /** `auto` uses the kernel nbd driver when /dev/nbd* exists, else nbdfuse + loop. @default 'auto' */
  attachMode?: 'auto' | AttachMode
  logger: Logger
  /** Called as staging progresses (observability; the crash tests stop the plugin at a step). */
  onStageStep?: (volumeId: string, step: StageStep) => void | Promise<void>
}

const SUPPORTED_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>([
  'SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER', 'MULTI_NODE_READER_ONLY',
])
const READ_ONLY_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY'])
/** The NBD block size: volumes grow in whole blocks. */
const BLOCK_BYTES = 4096

/** The node service plus start (recovery of what a previous run left) and stop. */
export type CairnNodeService = NodeService & Startable

/** Builds the node service; call `start()` before serving so a previous run's half-done work is finished or undone. */
export function createNodeService(deps: NodeServiceDeps): CairnNodeService {
  return new NodeServiceImpl(deps)
}

class NodeServiceImpl implements CairnNodeService {
  private readonly locks = new KeyedLocks()
  private readonly store: NodeStateStore
  private readonly stager: StagerComponents
  private mode: AttachMode | undefined

  constructor(private readonly deps: NodeServiceDeps) {
    this.store = new NodeStateStore(deps.stateDir)
    this.stager = { store: this.store, engine: { ...deps.engine, nodeId: deps.nodeId }, logger: deps.logger, onStep: deps.onStageStep }
  }

  async start(): Promise<void> {
    const { cleaned, kept } = await recoverVolumes(this.stager)
    this.deps.logger.info({ cleaned, kept }, 'node service recovered its volumes')
  }

  /** Staged volumes stay staged (their engines are detached processes); nothing to release here. */
  async stop(): Promise<void> {}

  async nodeStageVolume(req: NodeStageVolumeRequest): Promise<void> {
    requireId(req.volumeId, 'volume_id')
    requirePath(req.stagingTargetPath, 'staging_target_path')
    const { access, readOnly, accessMode } = validateCapability(req.volumeCapability)
    const engineReadOnly = readOnlyPublish(req.publishContext, readOnly)
    await this.locks.withLocks([req.volumeId], async () => {
      const existing = await this.store.read(req.volumeId)
      if (existing?.phase === 'staged') return this.checkSameStage(existing, req.stagingTargetPath, { access, readOnly, accessMode, engineReadOnly })
      // A state left half-done (crash, failed cleanup) is undone before staging again.
      if (existing !== undefined) await cleanupVolume(existing, this.stager)
      await this.checkVolumeLimit()
      const attachMode = await this.attachMode()
      await stageVolume({ volumeId: req.volumeId, stagingPath: req.stagingTargetPath, access, readOnly, accessMode, attachMode, engineReadOnly }, this.stager)
    })
  }

  async nodeUnstageVolume(req: NodeUnstageVolumeRequest): Promise<void> {
    requireId(req.volumeId, 'volume_id')
    requirePath(req.stagingTargetPath, 'staging_target_path')
    await this.locks.withLocks([req.volumeId], async () => {
      const state = await this.store.read(req.volumeId)
      if (state === undefined) return unmountAll(req.stagingTargetPath)
      await cleanupVolume(state, this.stager)
    })
  }

  async nodePublishVolume(req: NodePublishVolumeRequest): Promise<void> {
    requireId(req.volumeId, 'volume_id')
    requirePath(req.stagingTargetPath, 'staging_target_path')
    requirePath(req.targetPath, 'target_path')
    const { access, readOnly, accessMode } = validateCapability(req.volumeCapability)
    await this.locks.withLocks([req.volumeId], async () => {
      const state = await this.stagedState(req.volumeId, req.stagingTargetPath)
      if (state.access.type !== access.type) throw new CsiAlreadyExistsError(`volume ${req.volumeId} is staged for ${state.access.type} access, not ${access.type}`)
      const wanted: PublishRecord = { access, accessMode, readOnly: readOnly || req.readonly }
      const current = await mountedAt(req.targetPath)
      if (current !== undefined) checkSamePublish(state, req.targetPath, wanted, current.mountOptions.includes('ro'))
      if (state.access.type === 'block') await bindMount(requireDevice(state), req.targetPath, wanted.readOnly, true)
      else await bindMount(state.stagingPath, req.targetPath, wanted.readOnly, false)
      // Recorded after the mount: a plugin killed in between is caught by the mount's own ro flag next time.
      await this.store.write({ ...state, publishes: { ...state.publishes, [req.targetPath]: wanted } })
    })
  }

  async nodeUnpublishVolume(req: NodeUnpublishVolumeRequest): Promise<void> {
    requireId(req.volumeId, 'volume_id')
    requirePath(req.targetPath, 'target_path')
    await this.locks.withLocks([req.volumeId], async () => {
      await unmountAll(req.targetPath)
      await this.forgetPublish(req.volumeId, req.targetPath)
      // The CO expects the target gone; rmdir (not a recursive delete) never removes data someone left in it.
      const target = await stat(req.targetPath).catch(() => undefined)
      if (target?.isDirectory() === true) await rmdir(req.targetPath)
      else if (target !== undefined) await rm(req.targetPath, { force: true })
    })
  }

  async nodeGetVolumeStats(req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
    requireId(req.volumeId, 'volume_id')
    requirePath(req.volumePath, 'volume_path')
    const state = await this.store.read(req.volumeId)
    if (state === undefined || state.phase !== 'staged') throw new CsiNotFoundError(`volume ${req.volumeId} is not staged on this node`)
    const pathStat = await stat(req.volumePath).catch(() => undefined)
    if (pathStat === undefined) throw new CsiNotFoundError(`volume path ${req.volumePath} does not exist`)
    const volumeCondition = await this.condition(state, req.volumePath)
    if (pathStat.isBlockDevice() || state.access.type === 'block') {
      const total = await blockDeviceSizeBytes(req.volumePath).catch(() => 0)
      return { usage: [{ unit: 'BYTES', total, available: 0, used: 0 }], volumeCondition }
    }
    const u = await filesystemUsage(req.volumePath)
    return {
      usage: [
        { unit: 'BYTES', total: u.totalBytes, available: u.availableBytes, used: u.usedBytes },
        { unit: 'INODES', total: u.totalInodes, available: u.freeInodes, used: u.usedInodes },
      ],
      volumeCondition,
    }
  }

  async nodeExpandVolume(req: NodeExpandVolumeRequest): Promise<{ capacityBytes: number }> {
    requireId(req.volumeId, 'volume_id')
    requirePath(req.volumePath, 'volume_path')
    const requiredBytes = req.capacityRange?.requiredBytes ?? 0
    if (!Number.isSafeInteger(requiredBytes) || requiredBytes <= 0) throw new InvalidArgumentError('capacity_range.required_bytes must be a positive integer')
    return this.locks.withLocks([req.volumeId], async () => {
      const state = await this.store.read(req.volumeId)
      if (state === undefined || state.phase !== 'staged') throw new CsiNotFoundError(`volume ${req.volumeId} is not staged on this node`)
      const device = requireDevice(state)
      const sizeBytes = Math.ceil(requiredBytes / BLOCK_BYTES) * BLOCK_BYTES
      if ((await blockDeviceSizeBytes(device)) < sizeBytes) await this.growDevice(state, device, sizeBytes)
      if (state.access.type === 'mount' && !state.readOnly) await growMountedFilesystem(device, state.stagingPath, state.access.fsType)
      return { capacityBytes: await blockDeviceSizeBytes(device) }
    })
  }

  async nodeGetCapabilities(): Promise<NodeCapability[]> {
    return ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER']
  }

  async nodeGetInfo(): Promise<NodeInfo> {
    return { nodeId: this.deps.nodeId, maxVolumesPerNode: this.deps.maxVolumesPerNode ?? 0, accessibleTopology: { segments: { [TOPOLOGY_NODE_KEY]: this.deps.nodeId } } }
  }

  /** Grows the volume in the engine that holds it, then asks the device to re-read its size. */
  private async growDevice(state: VolumeState, device: string, sizeBytes: number): Promise<void> {
    if (state.engine === null) throw new CsiFailedPreconditionError(`volume ${state.volumeId} has no engine on this node`)
    const grown = await new AdminClient({ address: state.engine.adminAddress }).resize(state.volumeId, sizeBytes)
    // The loop device is limited to the volume's size over an export that advertises more (volume-stager.ts).
    if (state.attachMode === 'fuse') await setLoopSizeLimit(device, grown.sizeBytes)
    const now = await blockDeviceSizeBytes(device)
    if (now < sizeBytes) {
      throw new OnlineExpansionUnavailableError(
        `volume ${state.volumeId} grew to ${sizeBytes} bytes but ${device} still shows ${now}; unstage and stage it again to see the new size`,
      )
    }
  }

  private async condition(state: VolumeState, volumePath: string): Promise<VolumeCondition> {
    if (state.engine === null || !(await engineReady(state.engine.adminAddress))) return { abnormal: true, message: 'the volume engine on this node is not running' }
    const engine = (await new AdminClient({ address: state.engine.adminAddress, timeoutMs: 5000 }).listVolumes().catch(() => []))
      .find((v) => v.name === state.volumeId)?.engine
    const engineState = typeof engine?.state === 'string' ? engine.state : undefined
    if (engineState !== undefined && engineState !== 'serving' && engineState !== 'recovering') return { abnormal: true, message: `the volume engine is ${engineState}` }
    if (state.access.type === 'mount' && (await mountedAt(state.stagingPath)) === undefined) return { abnormal: true, message: `staging mount ${state.stagingPath} is gone` }
    if (state.access.type === 'mount' && (await mountedAt(volumePath)) === undefined) return { abnormal: true, message: `${volumePath} is not mounted` }
    return { abnormal: false, message: 'volume is attached and mounted' }
  }

  private async stagedState(volumeId: string, stagingPath: string): Promise<VolumeState> {
    const state = await this.store.read(volumeId)
    if (state === undefined || state.phase !== 'staged') throw new CsiFailedPreconditionError(`volume ${volumeId} is not staged on this node`)
    if (state.stagingPath !== stagingPath) throw new CsiFailedPreconditionError(`volume ${volumeId} is staged at ${state.stagingPath}, not ${stagingPath}`)
    return state
  }

  private async checkSameStage(
    state: VolumeState, stagingPath: string, wanted: { access: VolumeAccess; readOnly: boolean; accessMode: string; engineReadOnly: boolean },
  ): Promise<void> {
    // State written before access modes were recorded can only be compared on the rest.
    const sameMode = state.accessMode === undefined || state.accessMode === wanted.accessMode
    const sameEngine = (state.engineReadOnly ?? false) === wanted.engineReadOnly
    const same = state.stagingPath === stagingPath && isDeepStrictEqual(state.access, wanted.access) && state.readOnly === wanted.readOnly && sameMode && sameEngine
    if (!same) throw new CsiAlreadyExistsError(`volume ${state.volumeId} is already staged at ${state.stagingPath} with another capability`)
    if (wanted.access.type === 'mount' && (await mountedAt(stagingPath)) === undefined) {
      throw new CsiFailedPreconditionError(`volume ${state.volumeId} is recorded as staged but ${stagingPath} is not mounted; unstage it first`)
    }
  }

  /** Drops the target's publish record, if the volume is still staged here and has one. */
  private async forgetPublish(volumeId: string, targetPath: string): Promise<void> {
    const state = await this.store.read(volumeId)
    if (state?.publishes?.[targetPath] === undefined) return
    const { [targetPath]: _gone, ...publishes } = state.publishes
    await this.store.write({ ...state, publishes })
  }

  private async checkVolumeLimit(): Promise<void> {
    const max = this.deps.maxVolumesPerNode ?? 0
    if (max > 0 && (await this.store.list()).length >= max) throw new CsiFailedPreconditionError(`this node already holds ${max} volumes`)
  }

  private async attachMode(): Promise<AttachMode> {
    const wanted = this.deps.attachMode ?? 'auto'
    if (wanted !== 'auto') return wanted
    this.mode ??= await detectAttachMode()
    return this.mode
  }
}

function requireId(value: string, field: string): void {
  if (value === '') throw new InvalidArgumentError(`${field} is required`)
  if (value.length > 253 || /[\0/]/.test(value)) throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} is not a valid volume id`)
}

function requirePath(value: string, field: string): void {
  if (value === '') throw new InvalidArgumentError(`${field} is required`)
  if (!isAbsolute(value) || value.includes('\0') || value.split('/').includes('..')) throw new InvalidArgumentError(`${field} must be an absolute path without '..'`)
}

/** The capability as this plugin serves it. @throws InvalidArgumentError for what it cannot serve. */
export function validateCapability(cap: VolumeCapability | undefined): { access: VolumeAccess; readOnly: boolean; accessMode: AccessMode } {
  if (cap === undefined) throw new InvalidArgumentError('volume_capability is required')
  if (cap.accessType === undefined) throw new InvalidArgumentError('volume_capability needs an access type (block or mount)')
  if (!SUPPORTED_MODES.has(cap.accessMode)) throw new InvalidArgumentError(`access mode ${cap.accessMode} is not supported`)
  const readOnly = READ_ONLY_MODES.has(cap.accessMode)
  const accessMode = cap.accessMode
  if (cap.accessType.kind === 'block') return { access: { type: 'block' }, readOnly, accessMode }
  const fsType = cap.accessType.fsType === '' ? 'ext4' : cap.accessType.fsType
  if (!FS_TYPES.includes(fsType as FsType)) throw new InvalidArgumentError(`fs_type ${JSON.stringify(fsType)} is not supported (ext4, xfs)`)
  for (const flag of cap.accessType.mountFlags) {
    if (flag === '' || /[\s,\0]/.test(flag)) throw new InvalidArgumentError(`mount flag ${JSON.stringify(flag)} is not a single option`)
  }
  return { access: { type: 'mount', fsType: fsType as FsType, mountFlags: [...cap.accessType.mountFlags] }, readOnly, accessMode }
}

/**
 * A target already mounted may only be published again exactly as it was (spec: ALREADY_EXISTS when the
 * capability or readonly flag differs). Without a record (published by an older plugin) only the mount's
 * own ro flag can be compared.
 */
function checkSamePublish(state: VolumeState, targetPath: string, wanted: PublishRecord, mountedRo: boolean): void {
  const recorded = state.publishes?.[targetPath]
  if (recorded !== undefined && !isDeepStrictEqual(recorded, wanted)) {
    throw new CsiAlreadyExistsError(`${targetPath} is already published with another capability or readonly flag`)
  }
  if (mountedRo !== wanted.readOnly) throw new CsiAlreadyExistsError(`${targetPath} is already published ${mountedRo ? 'read-only' : 'read-write'}`)
}

/**
 * Whether the volume's engine serves it read-only (no epoch): the controller's read-only
 * publish says so in the publish context. A writable capability with that context is a
 * contradiction the CO must not send.
 * @throws InvalidArgumentError for a malformed flag or a writable capability
 */
function readOnlyPublish(publishContext: Record<string, string>, capabilityReadOnly: boolean): boolean {
  const flag = publishContext[PUBLISH_CONTEXT.readOnly]
  if (flag === undefined || flag === 'false') return false
  if (flag !== 'true') throw new InvalidArgumentError(`publish_context ${PUBLISH_CONTEXT.readOnly} must be 'true' or 'false', not ${JSON.stringify(flag)}`)
  if (!capabilityReadOnly) throw new InvalidArgumentError(`publish_context ${PUBLISH_CONTEXT.readOnly} is 'true' but the access mode is writable`)
  return true
}

function requireDevice(state: VolumeState): string {
  if (state.device === null) throw new CsiFailedPreconditionError(`volume ${state.volumeId} has no block device on this node`)
  return state.device
}

/**
 * Grows a mounted filesystem to its device. Online ext4 growth needs CAP_SYS_RESOURCE;
 * a plugin without it (an unprivileged container, this test machine) gets
 * OnlineExpansionUnavailableError, and the next NodeStage grows ext4 offline.
 */
async function growMountedFilesystem(device: string, mountPath: string, fsType: FsType): Promise<void> {
  try {
    await growFilesystem(device, mountPath, fsType)
  } catch (err) {
    if (fsType === 'ext4' && err instanceof CommandFailedError && /Permission denied|Operation not permitted/.test(err.stderr)) {
      throw new OnlineExpansionUnavailableError(`${device} grew, but growing the mounted ext4 filesystem needs CAP_SYS_RESOURCE; it grows at the next NodeStage`, { cause: err })
    }
    throw err
  }
}
