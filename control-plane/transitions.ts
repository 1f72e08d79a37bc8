/**
 * The state transitions of volumes and snapshots, as pure functions of (current
 * object, request). Every ControlPlane implementation runs the same loop: read the
 * object, compute the transition here, write it back with compare-and-swap on the
 * revision it read (one SQLite transaction in Local, resourceVersion in Kubernetes).
 * Keeping the rules here means both implementations refuse and allow the same things.
 */
import { InvalidArgumentError } from '../core/errors.js'
import {
  ConflictError,
  EpochFencedError,
  FailedPreconditionError,
  READERS_MAX,
  type Attachment,
  type Snapshot,
  type Volume,
  type VolumeHead,
  type VolumeSpec,
  type VolumeStatusPatch,
} from './types.js'
import { validateAccess, validateInteger, validateName, validateRelease, validateVolumeSize } from './validate.js'

/** What a new object needs from its store: an identity and a time. */
export interface Birth {
  uid: string
  nowIso: string
}

/** Where a clone or restore starts, with what it was taken from. */
export interface SourceHead {
  blockStore: string
  storagePolicy: string
  /** Smallest size the new volume may have. */
  minSizeBytes: number
  head: VolumeHead
  describe: string
}

/** A fresh volume: empty, or starting at `source`'s root. Its revision is set by the store. */
export function newVolume(name: string, spec: VolumeSpec, birth: Birth, source: SourceHead | undefined): Volume {
  let head: VolumeHead = { rootCid: null, sizeBytes: spec.sizeBytes, journalSeq: 0 }
  if (source !== undefined) {
    // Clones read the source's chunks, so they must be coded and placed the same way.
    if (source.blockStore !== spec.blockStore || source.storagePolicy !== spec.storagePolicy) {
      throw new InvalidArgumentError(
        `source: ${source.describe} is in block store ${source.blockStore} with policy ${source.storagePolicy}; ` +
          'a clone or restore must use the same',
      )
    }
    if (spec.sizeBytes < source.minSizeBytes) {
      throw new InvalidArgumentError(`sizeBytes: ${spec.sizeBytes} is smaller than ${source.describe} (${source.minSizeBytes})`)
    }
    // A new journal starts at 0; the engine grows the head to sizeBytes when it attaches.
    head = { rootCid: source.head.rootCid, sizeBytes: source.head.sizeBytes, journalSeq: 0 }
  }
  return {
    name,
    uid: birth.uid,
    revision: '',
    creationTime: birth.nowIso,
    ...spec,
    status: { head, epoch: 0, attachment: null, readers: [], recoveryPending: false, journalReplicas: [], allocatedBytes: 0, health: 'unknown' },
  }
}

export function sourceFromSnapshot(snapshot: Snapshot): SourceHead {
  if (!snapshot.status.readyToUse) throw new FailedPreconditionError(`snapshot ${snapshot.name} is not ready to use`)
  return {
    blockStore: snapshot.blockStore,
    storagePolicy: snapshot.storagePolicy,
    minSizeBytes: snapshot.status.sizeBytes,
    head: { rootCid: snapshot.status.rootCid, sizeBytes: snapshot.status.sizeBytes, journalSeq: 0 },
    describe: `snapshot ${snapshot.name}`,
  }
}

export function sourceFromVolume(volume: Volume): SourceHead {
  return {
    blockStore: volume.blockStore,
    storagePolicy: volume.storagePolicy,
    minSizeBytes: volume.sizeBytes,
    head: volume.status.head,
    describe: `volume ${volume.name}`,
  }
}

/** Grows the volume; undefined when it already has that size. */
export function resized(volume: Volume, sizeBytesRaw: unknown): Volume | undefined {
  const sizeBytes = validateVolumeSize('sizeBytes', sizeBytesRaw)
  if (sizeBytes === volume.sizeBytes) return undefined
  if (sizeBytes < volume.sizeBytes) {
    throw new InvalidArgumentError(`sizeBytes: volumes only grow; ${volume.name} is ${volume.sizeBytes}, asked ${sizeBytes}`)
  }
  return { ...volume, sizeBytes }
}

export function checkRevision(volume: Volume, expectedRevision: unknown): void {
  if (typeof expectedRevision !== 'string' || expectedRevision.length === 0) {
    throw new InvalidArgumentError('expectedRevision: must be a non-empty string')
  }
  if (volume.revision !== expectedRevision) {
    throw new ConflictError(`volume ${volume.name} is at revision ${volume.revision}, not ${expectedRevision}`)
  }
}

/** `patch` must have been validated. */
export function withStatusPatch(volume: Volume, patch: VolumeStatusPatch): Volume {
  return { ...volume, status: { ...volume.status, ...patch } }
}

/** `head` must have been validated; the fence is checked here. */
export function withHead(volume: Volume, epoch: unknown, head: VolumeHead): Volume {
  validateInteger('epoch', epoch, 0)
  if (epoch !== volume.status.epoch) throw new EpochFencedError(volume.name, epoch as number, volume.status.epoch)
  const current = volume.status.head
  if (head.journalSeq < current.journalSeq) {
    throw new InvalidArgumentError(`head.journalSeq: ${head.journalSeq} is behind the stored ${current.journalSeq}`)
  }
  if (head.sizeBytes < current.sizeBytes || head.sizeBytes > volume.sizeBytes) {
    throw new InvalidArgumentError(
      `head.sizeBytes: must be from the stored head's ${current.sizeBytes} to the volume's ${volume.sizeBytes}`,
    )
  }
  return { ...volume, status: { ...volume.status, head } }
}

/**
 * Grants `nodeId` the epoch after `expectedEpoch`, fencing every earlier holder. The engine a CSI publish
 * started re-acquires without an access of its own; the same node keeps the access its publish recorded.
 */
export function withAcquiredEpoch(volume: Volume, nodeIdRaw: unknown, expectedEpochRaw: unknown, nowIso: string, accessRaw?: unknown): Volume {
  const nodeId = validateName('nodeId', nodeIdRaw)
  const expectedEpoch = validateInteger('expectedEpoch', expectedEpochRaw, 0)
  const given = accessRaw === undefined ? undefined : validateAccess(accessRaw)
  if (volume.status.epoch !== expectedEpoch) {
    throw new ConflictError(`volume ${volume.name} is at epoch ${volume.status.epoch}, not ${expectedEpoch}`)
  }
  // A writer would change the head under the readers' feet, and GC could then reclaim the root they
  // serve. Only a head that may lag its journal is recovered with readers recorded: none of them can
  // be serving it yet, since a read-only attach recovers it first (ADR 0026).
  const readers = volume.status.readers
  if (readers.length > 0 && !volume.status.recoveryPending) {
    throw new FailedPreconditionError(`volume ${volume.name} is published read-only to ${readers.join(', ')}; no writer can attach until they are unpublished`)
  }
  const epoch = expectedEpoch + 1
  const held = volume.status.attachment
  const access = given ?? (held?.nodeId === nodeId ? held.access : undefined)
  const attachment: Attachment = { nodeId, epoch, since: nowIso, ...(access === undefined ? {} : { access }) }
  return { ...volume, status: { ...volume.status, epoch, attachment } }
}

/**
 * Clears the attachment if (`nodeId`, `epoch`) holds it, recording whether the head lags the
 * journal (`AttachmentRelease`); undefined when there is nothing to change.
 */
export function withReleased(volume: Volume, nodeIdRaw: unknown, epochRaw: unknown, releaseRaw?: unknown): Volume | undefined {
  const nodeId = validateName('nodeId', nodeIdRaw)
  const epoch = validateInteger('epoch', epochRaw, 1)
  const { headCurrent } = validateRelease(releaseRaw)
  const held = volume.status.attachment
  if (held === null || held.nodeId !== nodeId || held.epoch !== epoch) return undefined
  const recoveryPending = headCurrent === undefined ? volume.status.recoveryPending : !headCurrent
  return { ...volume, status: { ...volume.status, attachment: null, recoveryPending } }
}

export function checkDeletable(volume: Volume): void {
  const held = volume.status.attachment
  if (held !== null) {
    throw new FailedPreconditionError(`volume ${volume.name} is attached to ${held.nodeId} (epoch ${held.epoch}); detach first`)
  }
  const readers = volume.status.readers
  if (readers.length > 0) {
    throw new FailedPreconditionError(`volume ${volume.name} is published read-only to ${readers.join(', ')}; unpublish it first`)
  }
}

/**
 * Records `nodeId` as a reader; undefined when it already is one. Refused while a writer
 * holds the attachment: a reader must not see a head that another node is changing.
 */
export function withReader(volume: Volume, nodeIdRaw: unknown): Volume | undefined {
  const nodeId = validateName('nodeId', nodeIdRaw)
  const held = volume.status.attachment
  if (held !== null) {
    throw new FailedPreconditionError(`volume ${volume.name} is attached to ${held.nodeId} (epoch ${held.epoch}); it cannot also be read elsewhere`)
  }
  if (volume.status.readers.includes(nodeId)) return undefined
  if (volume.status.readers.length >= READERS_MAX) throw new FailedPreconditionError(`volume ${volume.name} already has ${READERS_MAX} readers`)
  return { ...volume, status: { ...volume.status, readers: [...volume.status.readers, nodeId].sort() } }
}

/** Forgets `nodeId` as a reader; undefined when it is not one. */
export function withoutReader(volume: Volume, nodeIdRaw: unknown): Volume | undefined {
  const nodeId = validateName('nodeId', nodeIdRaw)
  if (!volume.status.readers.includes(nodeId)) return undefined
  return { ...volume, status: { ...volume.status, readers: volume.status.readers.filter((r) => r !== nodeId) } }
}

/** A snapshot of the volume's current head. Its revision is set by the store. */
export function newSnapshot(name: string, volume: Volume, birth: Birth): Snapshot {
  return {
    name,
    uid: birth.uid,
    revision: '',
    creationTime: birth.nowIso,
    volume: volume.name,
    blockStore: volume.blockStore,
    storagePolicy: volume.storagePolicy,
    status: {
      rootCid: volume.status.head.rootCid,
      sizeBytes: volume.status.head.sizeBytes,
      readyToUse: true,
      creationTime: birth.nowIso,
    },
  }
}
