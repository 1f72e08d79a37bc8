/**
 * The staging pipeline of one volume on this node, and its exact undo:
 *   engine (detached `cairn engine`) → block device (kernel nbd or nbdfuse + loop)
 *   → filesystem (format only if blank) → mount at the staging path.
 * State is saved before each step that creates something; cleanup finds every
 * resource from the volume's deterministic paths, so it also undoes the steps of a
 * plugin that was killed before it could record them.
 */
import { join } from 'node:path'
import type { Logger } from '../../core/logger.js'
import { formatIfBlank, growExt4Offline, growFilesystem, mountDevice, mountedAt, unmountAll, type FsType } from '../mounts/filesystem.js'
import type { NodeStateStore, VolumeAccess, VolumeState } from '../state.js'
import { AdminClient } from '../../engine/host/admin-client.js'
import { AttachFailedError, attachBlockDevice, detachBlockDevice, type AttachMode } from './block-device.js'
import { DEFAULT_EXPORT_SIZE_CEILING_BYTES, startEngine, stopEngine, type EngineLaunchInit } from './engine-process.js'

/** Steps reported as they complete (logs, and the crash tests stop the plugin at one). */
export type StageStep = 'engine-started' | 'attached' | 'formatted' | 'mounted' | 'staged'

export interface StagerComponents {
  store: NodeStateStore
  engine: EngineLaunchInit
  logger: Logger
  onStep?: (volumeId: string, step: StageStep) => void | Promise<void>
}

export interface StageRequest {
  volumeId: string
  stagingPath: string
  access: VolumeAccess
  readOnly: boolean
  /** Recorded so a later NodeStage with another access mode is ALREADY_EXISTS, also after a plugin restart. */
  accessMode: string
  attachMode: AttachMode
  /** The engine serves the volume read-only and takes no epoch (a read-only publish: several nodes at once). @default false */
  engineReadOnly?: boolean
}

/** Runs the whole pipeline; on failure undoes what it did and rethrows. */
export async function stageVolume(req: StageRequest, c: StagerComponents): Promise<VolumeState> {
  let state: VolumeState = { version: 1, phase: 'staging', ...req, engine: null, device: null }
  await c.store.write(state)
  try {
    const volumeDir = c.store.volumeDir(req.volumeId)
    // nbdfuse fixes its file's size at connect: the export advertises a ceiling and the loop device is limited to the volume.
    const growable = req.attachMode === 'fuse'
    const engine = await ensureEngine(c, req.volumeId, volumeDir, growable, req.engineReadOnly === true)
    state = { ...state, engine }
    await c.store.write(state)
    await c.onStep?.(req.volumeId, 'engine-started')
    const sizeLimitBytes = growable ? await engineVolumeSizeBytes(engine.adminAddress, req.volumeId) : undefined
    const device = await attachBlockDevice(req.attachMode, { exportName: req.volumeId, socketPath: engine.socketPath, volumeDir, sizeLimitBytes })
    state = { ...state, device }
    await c.store.write(state)
    await c.onStep?.(req.volumeId, 'attached')
    if (req.access.type === 'mount') await mountFilesystem(req, device, req.access.fsType, req.access.mountFlags, c)
    state = { ...state, phase: 'staged' }
    await c.store.write(state)
    await c.onStep?.(req.volumeId, 'staged')
    return state
  } catch (err) {
    c.logger.warn({ volume: req.volumeId, err }, 'staging failed; undoing it')
    await cleanupVolume(state, c).catch((cleanupErr: unknown) => c.logger.error({ volume: req.volumeId, err: cleanupErr }, 'undoing a failed stage failed; the next call retries'))
    throw err
  }
}

async function mountFilesystem(req: StageRequest, device: string, fsType: FsType, flags: readonly string[], c: StagerComponents): Promise<void> {
  const formatted = !req.readOnly && (await formatIfBlank(device, fsType)) === 'formatted'
  if (formatted) await c.onStep?.(req.volumeId, 'formatted')
  // A volume expanded while it was not staged here gets its filesystem grown now: ext4 before mounting, xfs only mounted.
  if (!formatted && !req.readOnly && fsType === 'ext4') await growExt4Offline(device)
  await mountDevice(device, req.stagingPath, fsType, flags, req.readOnly)
  if (!req.readOnly && fsType === 'xfs') await growFilesystem(device, req.stagingPath, fsType)
  await c.onStep?.(req.volumeId, 'mounted')
}

/** A fresh engine: one left on the socket by an earlier, interrupted run is stopped first (it flushes on SIGTERM). */
async function ensureEngine(
  c: StagerComponents, volumeId: string, volumeDir: string, growable: boolean, readOnly: boolean,
): Promise<NonNullable<VolumeState['engine']>> {
  await stopEngine(join(volumeDir, 'engine.sock'), c.engine.stopTimeoutMs)
  const exportSizeCeilingBytes = growable ? (c.engine.exportSizeCeilingBytes ?? DEFAULT_EXPORT_SIZE_CEILING_BYTES) : undefined
  return startEngine(c.engine, volumeId, volumeDir, { exportSizeCeilingBytes, readOnly })
}

/** The volume's size as its engine holds it (the export may advertise more). */
async function engineVolumeSizeBytes(adminAddress: string, volumeId: string): Promise<number> {
  const volume = (await new AdminClient({ address: adminAddress }).listVolumes()).find((v) => v.name === volumeId)
  if (volume === undefined) throw new AttachFailedError(`the engine at ${adminAddress} does not serve volume ${volumeId}`)
  return volume.sizeBytes
}

/**
 * Undoes staging in reverse: unmount, detach the block device (nbdfuse flushes and
 * disconnects), stop the engine (SIGTERM: final flush, attachment released), forget.
 * Idempotent; a step already undone is skipped.
 */
export async function cleanupVolume(state: Pick<VolumeState, 'volumeId' | 'stagingPath' | 'attachMode' | 'device'>, c: StagerComponents): Promise<void> {
  const volumeDir = c.store.volumeDir(state.volumeId)
  await c.store.write({ ...(await c.store.read(state.volumeId) ?? fallbackState(state)), phase: 'unstaging' })
  await unmountAll(state.stagingPath)
  await detachBlockDevice(state.attachMode, { exportName: state.volumeId, socketPath: join(volumeDir, 'engine.sock'), volumeDir }, state.device ?? undefined)
  await stopEngine(join(volumeDir, 'engine.sock'), c.engine.stopTimeoutMs)
  await c.store.remove(state.volumeId)
  c.logger.info({ volume: state.volumeId }, 'volume unstaged')
}

function fallbackState(state: Pick<VolumeState, 'volumeId' | 'stagingPath' | 'attachMode' | 'device'>): VolumeState {
  return { version: 1, phase: 'unstaging', access: { type: 'block' }, readOnly: false, engine: null, ...state }
}

/**
 * What a restarted plugin does with what it finds: half-done stages and unstages are
 * undone (the CO retries NodeStage, which then starts clean); staged volumes stay.
 */
export async function recoverVolumes(c: StagerComponents): Promise<{ cleaned: string[]; kept: string[] }> {
  const cleaned: string[] = []
  const kept: string[] = []
  for (const state of await c.store.list()) {
    if (state.phase === 'staged' && (await mountedOrBlock(state))) {
      kept.push(state.volumeId)
      continue
    }
    await cleanupVolume(state, c)
    cleaned.push(state.volumeId)
  }
  return { cleaned, kept }
}

async function mountedOrBlock(state: VolumeState): Promise<boolean> {
  return state.access.type === 'block' || (await mountedAt(state.stagingPath)) !== undefined
}
