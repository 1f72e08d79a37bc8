/**
 * Attaching a volume: take an epoch, open (and so fence) the journal, recover
 * from the newer of the control-plane head and the journal checkpoint, replay the
 * records after it, then serve.
 */
import type { Registry } from 'prom-client'
import type { Logger } from 'pino'
import { cidFromString } from '../../core/cid.js'
import { membersInStates } from '../../core/cluster-map.js'
import { rank } from '../../core/placement.js'
import { assert } from '../../core/errors.js'
import { ConflictError, type ControlPlane, type StoragePolicy, type Volume } from '../../control-plane/types.js'
import type { ChunkStore, JournalCheckpoint, JournalRecord, ManifestStore, VolumeJournal } from '../contracts.js'
import { JournalReplayError, VolumeAttachError } from './errors.js'
import { VolumeEngine, MAX_IO_BYTES } from './engine.js'
import { HeadWriter } from './head-writer.js'
import { LookupCache } from './lookup-cache.js'
import { createVolumeMetrics } from './metrics.js'
import { resolveOptions, type VolumeEngineOptions } from './options.js'

export interface JournalFactoryInit {
  volumeName: string
  volumeUid: string
  epoch: number
  /** Storage-node ids to hold the journal; the factory may replace unreachable ones (see `replicas()`). */
  replicas: readonly string[]
  /** The policy the volume is coded with (journal replica count, block store). */
  policy: StoragePolicy
  blockStore: string
}

/** Builds the journal client of one volume incarnation at one epoch (not yet opened). */
export type JournalFactory = (init: JournalFactoryInit) => VolumeJournal | Promise<VolumeJournal>

export interface AttachInit {
  volumeName: string
  /** The node attaching (recorded as the attachment). */
  nodeId: string
  options?: VolumeEngineOptions
}

export interface AttachComponents {
  controlPlane: ControlPlane
  /** Coded with the volume's policy. */
  chunkStore: ChunkStore
  manifest: ManifestStore
  journalFactory: JournalFactory
  logger: Logger
  registry: Registry
}

/**
 * Attaches `volumeName` on this node and returns its engine, started and serving.
 * Every older attachment is fenced from the moment the journal opens.
 * @throws VolumeAttachError, JournalReplayError, NotFoundError, EpochFencedError (a newer attach raced this one)
 */
export async function attachVolume(init: AttachInit, components: AttachComponents): Promise<VolumeEngine> {
  const { controlPlane } = components
  const logger = components.logger.child({ volume: init.volumeName })
  const initial = await controlPlane.getVolume(init.volumeName)
  const policy = await controlPlane.getStoragePolicy(initial.storagePolicy)
  const options = resolveOptions(init.options ?? {}, policy.chunkSizeBytes)
  if (policy.chunkSizeBytes > MAX_IO_BYTES) throw new VolumeAttachError(`chunk size ${policy.chunkSizeBytes} exceeds ${MAX_IO_BYTES}`)
  const volume = await acquireEpoch(controlPlane, initial, init.nodeId, options.casRetriesMax)
  const epoch = volume.status.epoch
  logger.info({ epoch, nodeId: init.nodeId }, 'epoch acquired')
  let journal: VolumeJournal | undefined
  try {
    const replicas = await chooseJournalReplicas(controlPlane, volume, policy)
    journal = await components.journalFactory({
      volumeName: volume.name,
      volumeUid: volume.uid,
      epoch,
      replicas,
      policy,
      blockStore: volume.blockStore,
    })
    const engine = await recover(init, components, { volume, policy, epoch, journal, options })
    await engine.start()
    await growToVolumeSize(engine, volume.sizeBytes)
    await recordReplicas(controlPlane, volume.name, epoch, journal.replicas(), logger)
    return engine
  } catch (err) {
    // Leave nothing half-attached: the journal closed and the attachment released, so a retry starts clean.
    // No headCurrent: this attach served nothing, so the head lags the journal exactly as much as before.
    await journal?.close().catch(() => undefined)
    await controlPlane.releaseAttachment(volume.name, init.nodeId, epoch, {}).catch(() => undefined)
    throw err
  }
}

/** Takes the next epoch by CAS; concurrent attachers retry a bounded number of times. */
async function acquireEpoch(controlPlane: ControlPlane, volume: Volume, nodeId: string, retriesMax: number): Promise<Volume> {
  let current = volume
  for (let attempt = 0; ; attempt++) {
    try {
      return await controlPlane.acquireEpoch(current.name, nodeId, current.status.epoch)
    } catch (err) {
      if (!(err instanceof ConflictError) || attempt >= retriesMax) throw err
      current = await controlPlane.getVolume(current.name)
    }
  }
}

/**
 * The journal's replicas: those recorded on the volume, else the first
 * `journalReplicas` members of the HRW ranking of the volume's uid (one per
 * failure domain), so every attacher picks the same nodes. Empty when the block
 * store has no members yet (the factory decides what that means).
 */
async function chooseJournalReplicas(controlPlane: ControlPlane, volume: Volume, policy: StoragePolicy): Promise<string[]> {
  if (volume.status.journalReplicas.length > 0) return volume.status.journalReplicas
  const map = await controlPlane.getClusterMap(volume.blockStore)
  if (map.members.length === 0) return []
  const exclude = membersInStates(map, ['draining', 'down'])
  const ranked = rank(new TextEncoder().encode(volume.uid), map, { exclude })
  return ranked.slice(0, policy.journalReplicas).map((m) => m.id)
}

interface RecoverInput {
  volume: Volume
  policy: StoragePolicy
  epoch: number
  journal: VolumeJournal
  options: ReturnType<typeof resolveOptions>
}

async function recover(init: AttachInit, components: AttachComponents, input: RecoverInput): Promise<VolumeEngine> {
  const { volume, journal, epoch } = input
  const opened = await journal.open()
  const head = volume.status.head
  const checkpoint: JournalCheckpoint | null = opened.checkpoint
  // The newer of the two wins; the head is written before the checkpoint, so a tie means the same state.
  const fromCheckpoint = checkpoint !== null && checkpoint.seq > head.journalSeq
  const start = fromCheckpoint ? checkpoint : { rootCid: head.rootCid, sizeBytes: head.sizeBytes, seq: head.journalSeq }
  const headWriter = new HeadWriter(components.controlPlane, volume.name, epoch, volume.revision, input.options.casRetriesMax)
  if (fromCheckpoint) {
    // The head lags the journal (written by an older engine that died in between): catch it up first.
    await headWriter.write({ rootCid: start.rootCid, sizeBytes: Math.max(start.sizeBytes, head.sizeBytes), journalSeq: start.seq })
  }
  const root = start.rootCid === null ? null : cidFromString(start.rootCid)
  const engine = new VolumeEngine(
    {
      volumeName: volume.name,
      volumeUid: volume.uid,
      nodeId: init.nodeId,
      epoch,
      chunkSizeBytes: input.policy.chunkSizeBytes,
      headSeq: start.seq,
      headSizeBytes: Math.max(start.sizeBytes, fromCheckpoint ? head.sizeBytes : 0),
      checkpointSeq: checkpoint?.seq ?? 0,
      options: input.options,
      journal,
      lookups: new LookupCache(components.manifest, root, input.options.lookupCacheEntries),
      headWriter,
    },
    {
      controlPlane: components.controlPlane,
      chunkStore: components.chunkStore,
      manifest: components.manifest,
      logger: components.logger,
      metrics: createVolumeMetrics(components.registry),
    },
  )
  const replayed = replayRecords(engine, start.seq, opened.records, volume.sizeBytes)
  components.logger.info({ volume: volume.name, epoch, fromSeq: start.seq, replayed, fromCheckpoint }, 'volume recovered')
  return engine
}

/** Replays the records after `afterSeq`, checking they form a gapless run of valid ops. */
function replayRecords(engine: VolumeEngine, afterSeq: number, records: readonly JournalRecord[], volumeSizeBytes: number): number {
  let expected = afterSeq + 1
  let count = 0
  for (const record of records) {
    if (record.seq <= afterSeq) continue
    if (record.seq !== expected) throw new JournalReplayError(`journal record ${record.seq} follows ${expected - 1}: a gap`)
    const op = record.op
    const size = op.kind === 'resize' ? op.sizeBytes : engine.sizeBytes
    const end = op.kind === 'write' ? op.offsetBytes + op.data.length : op.kind === 'resize' ? 0 : op.offsetBytes + op.lengthBytes
    if (!Number.isSafeInteger(size) || size > volumeSizeBytes || end > engine.sizeBytes || (op.kind !== 'resize' && op.offsetBytes < 0)) {
      throw new JournalReplayError(`journal record ${record.seq} (${op.kind}) is outside the volume`)
    }
    engine.replay(record.seq, op)
    expected++
    count++
  }
  return count
}

/** A volume resized in the control plane while detached (or a clone bigger than its source) grows on attach. */
async function growToVolumeSize(engine: VolumeEngine, volumeSizeBytes: number): Promise<void> {
  assert(engine.sizeBytes <= volumeSizeBytes, `recovered size ${engine.sizeBytes} exceeds the volume's ${volumeSizeBytes}`)
  if (engine.sizeBytes < volumeSizeBytes) await engine.resize(volumeSizeBytes)
}

/** Records where the journal lives, so the operator and the next attacher know. */
async function recordReplicas(controlPlane: ControlPlane, name: string, epoch: number, replicas: readonly string[], logger: Logger): Promise<void> {
  const volume = await controlPlane.getVolume(name)
  if (volume.status.epoch !== epoch) return
  const same = volume.status.journalReplicas.length === replicas.length && replicas.every((r, i) => volume.status.journalReplicas[i] === r)
  if (same || replicas.length === 0) return
  try {
    await controlPlane.updateVolumeStatus(name, volume.revision, { journalReplicas: [...replicas] })
  } catch (err) {
    // Not fatal: the engine serves; a conflict means someone else wrote status and the next attach records it.
    logger.warn({ err }, 'recording journal replicas failed')
  }
}
