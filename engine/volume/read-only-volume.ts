/**
 * Serving a volume read-only: the bytes of its control-plane head, with no epoch,
 * no journal and no writes of any kind, so any number of nodes can serve the same
 * volume at once (CSI MULTI_NODE_READER_ONLY, docs/adr/0016-csi-driver.md).
 *
 * Why the head is enough: a writer's clean detach (VolumeEngine.stop) flushes its
 * dirty map, writes the head and checkpoints the journal before it releases the
 * attachment, so with no attachment recorded the head holds every acknowledged
 * write. With an attachment recorded the head may lag the writer's journal, and
 * only the journal's holder (or a fencing attach) can fold it in: refused here.
 * A writer that let go without a clean detach (its node died and the CSI
 * controller released it, or its final flush failed) leaves `recoveryPending`:
 * the attach first recovers the journal through `recover` (a writer attach and a
 * clean detach), so the head it serves holds every acknowledged write.
 */
import type { Logger } from 'pino'
import { cidFromString } from '../../core/cid.js'
import { CairnError } from '../../core/errors.js'
import type { ControlPlane, Volume } from '../../control-plane/types.js'
import type { BlockSizeConstraints, Extent, NbdBackend, WriteOptions, ZeroOptions } from '../nbd/backend.js'
import type { ChunkStore, ManifestStore } from '../contracts.js'
import { DirtyMap } from './dirty-map.js'
import { MAX_IO_BYTES } from './engine.js'
import { VolumeAttachError } from './errors.js'
import { LookupCache } from './lookup-cache.js'
import { extentsOf, readRange, type ReaderDeps } from './reader.js'
import { VOLUME_MEMORY_DEFAULTS } from './options.js'

/** A write, trim or zero reached a read-only volume. Kind 'permission-denied': NBD clients see EPERM. */
export class ReadOnlyVolumeError extends CairnError {
  override readonly name = 'ReadOnlyVolumeError'
  readonly kind = 'permission-denied'
}

/**
 * A read-only attach while a writer holds the volume: its head may lag the writer's
 * journal, so what a reader would see is not what the writer acknowledged.
 */
export class VolumeWriterAttachedError extends CairnError {
  override readonly name = 'VolumeWriterAttachedError'
  readonly kind = 'failed-precondition'
}

/**
 * A read-only attach of a volume whose head may lag its journal (`status.recoveryPending`)
 * that could not recover it first. Kind 'unavailable': retry once a writer attach has folded it in.
 */
export class VolumeRecoveryPendingError extends CairnError {
  override readonly name = 'VolumeRecoveryPendingError'
  readonly kind = 'unavailable'
}

/** The read-only volume was detached; reads fail (EIO: the device is gone). */
export class ReadOnlyVolumeClosedError extends CairnError {
  override readonly name = 'ReadOnlyVolumeClosedError'
  readonly kind = 'unavailable'
}

export interface ReadOnlyAttachInit {
  volumeName: string
  /** Cached chunk index → CID lookups of the head's manifest. @default VOLUME_MEMORY_DEFAULTS.lookupCacheEntries (the writer engine's default) */
  lookupCacheEntries?: number
}

export interface ReadOnlyAttachComponents {
  controlPlane: ControlPlane
  /** Coded with the volume's policy. */
  chunkStore: ChunkStore
  manifest: ManifestStore
  logger: Logger
  /**
   * Folds the journal of a volume with `status.recoveryPending` into its head: attaches it for
   * writing on this node (which replays the journal) and detaches cleanly. Without it such a
   * volume is refused with VolumeRecoveryPendingError.
   */
  recover?: (volumeName: string) => Promise<void>
}

/**
 * Opens `volumeName` read-only at its current head. Takes no epoch and changes
 * nothing in the control plane, so it fences nobody and needs no release; only a
 * head that may lag its journal (`status.recoveryPending`) is first recovered
 * through `components.recover`, which does take an epoch and release it.
 * @throws VolumeWriterAttachedError while a writer holds the volume; VolumeRecoveryPendingError, VolumeAttachError, NotFoundError
 */
export async function attachReadOnly(init: ReadOnlyAttachInit, components: ReadOnlyAttachComponents): Promise<ReadOnlyVolume> {
  let volume = await components.controlPlane.getVolume(init.volumeName)
  refuseWriter(volume)
  if (volume.status.recoveryPending) {
    if (components.recover === undefined) {
      throw new VolumeRecoveryPendingError(`volume ${volume.name}: its last writer let go without a clean detach, so its head may lag its journal; attach it for writing once to recover`)
    }
    components.logger.info({ volume: volume.name, journalSeq: volume.status.head.journalSeq }, 'the last writer let go without a clean detach; recovering the journal into the head before serving read-only')
    await components.recover(volume.name)
    volume = await components.controlPlane.getVolume(init.volumeName)
    refuseWriter(volume)
    if (volume.status.recoveryPending) throw new VolumeRecoveryPendingError(`volume ${volume.name}: recovering its journal did not complete (the final flush failed); its head may still lag`)
  }
  const policy = await components.controlPlane.getStoragePolicy(volume.storagePolicy)
  if (policy.chunkSizeBytes > MAX_IO_BYTES) throw new VolumeAttachError(`chunk size ${policy.chunkSizeBytes} exceeds ${MAX_IO_BYTES}`)
  const head = volume.status.head
  const root = head.rootCid === null ? null : cidFromString(head.rootCid)
  components.logger.info({ volume: volume.name, root: head.rootCid, journalSeq: head.journalSeq }, 'volume attached read-only')
  return new ReadOnlyVolume(
    {
      volumeName: volume.name,
      // The control plane's size: a volume grown while detached reads as zeroes past its head's size.
      sizeBytes: Math.max(volume.sizeBytes, head.sizeBytes),
      chunkSizeBytes: policy.chunkSizeBytes,
      rootCid: head.rootCid,
      journalSeq: head.journalSeq,
    },
    {
      dirty: new DirtyMap(policy.chunkSizeBytes),
      lookups: new LookupCache(components.manifest, root, init.lookupCacheEntries ?? VOLUME_MEMORY_DEFAULTS.lookupCacheEntries),
      chunkStore: components.chunkStore,
      manifest: components.manifest,
      chunkSizeBytes: policy.chunkSizeBytes,
    },
  )
}

/** A writer's head may lag its journal: nothing can be served read-only while one holds the volume. */
function refuseWriter(volume: Volume): void {
  const held = volume.status.attachment
  if (held === null) return
  throw new VolumeWriterAttachedError(
    `volume ${volume.name} is attached for writing on ${held.nodeId} (epoch ${held.epoch}); its head may lag that writer's journal, so it cannot be served read-only until the writer detaches`,
  )
}

export interface ReadOnlyVolumeInit {
  volumeName: string
  sizeBytes: number
  chunkSizeBytes: number
  /** The head served (null: the volume was never written, reads as zeroes). */
  rootCid: string | null
  journalSeq: number
}

/**
 * An NBD backend over one fixed manifest root. It goes through the engine's own
 * read path (reader.ts) with a dirty map that stays empty, so reads and
 * BLOCK_STATUS answer exactly as a writer's engine would for the same head.
 */
export class ReadOnlyVolume implements NbdBackend {
  readonly isReadOnly = true
  readonly canFua = false
  readonly canMultiConn = true
  readonly canTrim = false
  readonly canZero = false
  readonly canFastZero = false
  readonly blockSize: BlockSizeConstraints
  readonly description: string
  private closed = false

  constructor(
    private readonly init: ReadOnlyVolumeInit,
    private readonly reader: ReaderDeps,
  ) {
    this.blockSize = { minimumBytes: 1, preferredBytes: init.chunkSizeBytes, maximumBytes: MAX_IO_BYTES }
    this.description = `cairn volume ${init.volumeName} (read-only)`
  }

  get sizeBytes(): number {
    return this.init.sizeBytes
  }

  get volumeName(): string {
    return this.init.volumeName
  }

  async pread(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.checkOpen()
    return readRange(this.reader, offsetBytes, lengthBytes)
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkOpen()
    return extentsOf(this.reader, offsetBytes, lengthBytes)
  }

  async pwrite(_offsetBytes: number, _data: Uint8Array, _options: WriteOptions): Promise<void> {
    throw this.refused('WRITE')
  }

  async trim(_offsetBytes: number, _lengthBytes: number, _options: WriteOptions): Promise<void> {
    throw this.refused('TRIM')
  }

  async zero(_offsetBytes: number, _lengthBytes: number, _options: ZeroOptions): Promise<void> {
    throw this.refused('WRITE_ZEROES')
  }

  /** Nothing was written, so there is nothing to persist. */
  async flush(): Promise<void> {}

  /** A JSON view for the status page and `GET /v1/volumes`. */
  status(): Record<string, unknown> {
    return {
      state: this.closed ? 'stopped' : 'serving',
      readOnly: true,
      sizeBytes: this.init.sizeBytes,
      rootCid: this.init.rootCid,
      journalSeq: this.init.journalSeq,
    }
  }

  /** Stops serving; there is no epoch or attachment to release. Idempotent. */
  async close(): Promise<void> {
    this.closed = true
  }

  private checkOpen(): void {
    if (this.closed) throw new ReadOnlyVolumeClosedError(`read-only volume ${this.init.volumeName} is detached`)
  }

  private refused(command: string): ReadOnlyVolumeError {
    return new ReadOnlyVolumeError(`${command} refused: volume ${this.init.volumeName} is attached read-only`)
  }
}
