/**
 * The control plane contract: the domain objects Cairn keeps in its control
 * plane (block stores, storage policies, volumes, snapshots, cluster maps), the
 * `ControlPlane` interface over them, and the typed errors it throws.
 *
 * Two implementations satisfy it: Local (one better-sqlite3 file, for `cairn dev`
 * and tests) and Kubernetes (CRDs in `cairn.dev/v1alpha1`). Both must pass the
 * suite in `conformance.ts` unchanged, so every behaviour a caller may rely on is
 * written here as a one-line contract and checked there.
 *
 * Every object is plain JSON-serialisable data. Each carries an opaque `revision`
 * (Kubernetes' resourceVersion; a store-wide counter in Local): it changes on
 * every write to the object and is what compare-and-swap compares.
 */
import { CairnError } from '../core/errors.js'
import type { Startable } from '../core/startable.js'

/** Content hash naming chunks (the CID's multihash). */
export type HashAlgorithm = 'sha2-256' | 'blake3'

/** The object kinds of the control plane; `NotFoundError.resource` names one. */
export type ResourceKind = 'BlockStore' | 'StoragePolicy' | 'Volume' | 'Snapshot'

/** Fields every stored object carries. */
export interface ObjectMeta {
  /** DNS-1123 subdomain, unique per kind. */
  name: string
  /** Unique per incarnation: a deleted and re-created object gets a new one. */
  uid: string
  /** Opaque; changes on every write. Compare only for equality. */
  revision: string
  /** RFC 3339 timestamp of creation. */
  creationTime: string
}

// ---------------------------------------------------------------- policies

/** What a caller gives to create a StoragePolicy; omitted fields take their defaults. */
export interface StoragePolicySpecInput {
  /** k: data shards per chunk, 1 ≤ k; k + m ≤ 32. */
  dataShards: number
  /** m: parity shards per chunk, 0 ≤ m. Any k of the k + m shards rebuild a chunk. */
  parityShards: number
  /** Chunk size, a power of two from 4 KiB to 4 MiB. @default 65536 */
  chunkSizeBytes?: number
  /** @default 'sha2-256' */
  hash?: HashAlgorithm
  /** Node label whose values are failure domains; at most one shard of a chunk per domain. @default 'kubernetes.io/hostname' */
  failureDomainKey?: string
  /** Storage nodes holding each volume's journal, 1 to 32. @default parityShards + 1 (the data's fault tolerance) */
  journalReplicas?: number
  /** Seconds between full scrubs of a shard, 60 s to 1 year. @default 604800 (7 days) */
  scrubIntervalSeconds?: number
  /** Cap on repair traffic per storage node. @default 67108864 (64 MiB/s) */
  repairBandwidthBytesPerSecond?: number
}

/** A StoragePolicy's spec with every default applied. */
export type StoragePolicySpec = Required<StoragePolicySpecInput>

/** How volumes are cut into chunks and coded (CRD `StoragePolicy`). */
export interface StoragePolicy extends ObjectMeta, StoragePolicySpec {}

export interface StoragePolicyInput extends StoragePolicySpecInput {
  name: string
}

// ---------------------------------------------------------------- block stores

// The cluster map has one definition, shared with placement and the operator.
import type { ClusterMap } from '../core/cluster-map.js'
export type { ClusterMap, ClusterMember, MemberState } from '../core/cluster-map.js'

export interface BlockStoreSpecInput {
  /** Directory on each storage node where shards live. */
  hostPath: string
  /** @default 'kubernetes.io/hostname' */
  failureDomainKey?: string
  /** Nodes eligible to store (Kubernetes only; Local ignores it). @default {} */
  nodeSelector?: Record<string, string>
}

export type BlockStoreSpec = Required<BlockStoreSpecInput>

/** A pool of storage nodes (CRD `BlockStore`); its status holds the cluster map. */
export interface BlockStore extends ObjectMeta, BlockStoreSpec {
  status: { clusterMap: ClusterMap }
}

export interface BlockStoreInput extends BlockStoreSpecInput {
  name: string
}

// ---------------------------------------------------------------- volumes

/**
 * A volume's state: the root of its Merkle map, the size it covers and the
 * journal sequence it includes. A snapshot is a saved head.
 */
export interface VolumeHead {
  /** CIDv1 string of the manifest root; null for a volume never written (all zeros). */
  rootCid: string | null
  /** Size covered by the manifest; ≤ the volume's `sizeBytes`, grows when the engine expands. */
  sizeBytes: number
  /** Last journal sequence folded into `rootCid`; never decreases. */
  journalSeq: number
}

/** Who holds the volume: the node that last took an epoch. */
export interface Attachment {
  nodeId: string
  /** The epoch granted to `nodeId`; journal replicas refuse any older one. */
  epoch: number
  /** RFC 3339 time the epoch was granted. */
  since: string
  /** How the CSI publish that took this attachment asked for the volume; absent when unknown (an engine attached on its own). */
  access?: AttachmentAccess
}

/** What the holder knows about the head when it lets go of the attachment (`releaseAttachment`). */
export interface AttachmentRelease {
  /**
   * true: the holder folded every write it acknowledged into the head (a clean detach).
   * false: it may not have (a forced release for a dead node, a failed final flush).
   * Absent: the holder never served writes (an attach that failed), so what held before still holds.
   */
  headCurrent?: boolean
}

/** The capability a writer was published with, so a repeat publish with another one is told apart (CSI ALREADY_EXISTS). */
export interface AttachmentAccess {
  /** CSI access mode name, for example `SINGLE_NODE_WRITER`. */
  mode: string
  readOnly: boolean
}

export type VolumeHealth = 'unknown' | 'healthy' | 'degraded' | 'failed'

export interface VolumeStatus {
  head: VolumeHead
  /** Highest epoch ever granted for this volume incarnation; never decreases. 0 = never attached. */
  epoch: number
  attachment: Attachment | null
  /**
   * Nodes the volume is published to read-only (CSI MULTI_NODE_READER_ONLY), sorted, without repeats.
   * Readers take no epoch; while any is recorded the volume cannot be deleted, and `addReader` is
   * refused while a writer holds the attachment. Empty for a volume never published read-only.
   */
  readers: string[]
  /**
   * True while the head may lag the journal: the last writer let go of the attachment without
   * folding every acknowledged write into the head (its node died and the CSI controller released
   * it, or its final flush failed). The journal still holds those writes; a writer attach replays
   * them, and a read-only attach must recover them first. Cleared by a release with `headCurrent`.
   */
  recoveryPending: boolean
  /** Storage-node ids holding the journal. */
  journalReplicas: string[]
  /** Bytes of shards this volume references (accounting, not a quota). */
  allocatedBytes: number
  health: VolumeHealth
}

/** Most readers one volume records (the CRD's `status.readers` maxItems). */
export const READERS_MAX = 1024

/** Where a new volume's head starts: a snapshot's root (restore) or another volume's head (clone). */
export type VolumeSource = { snapshot: string } | { volume: string }

export interface VolumeSpec {
  blockStore: string
  storagePolicy: string
  /** Positive multiple of 4096 (the NBD block size), at most 2^53 − 4096. */
  sizeBytes: number
  source?: VolumeSource
}

/** A block device (CRD `Volume`). */
export interface Volume extends ObjectMeta, VolumeSpec {
  status: VolumeStatus
}

export interface VolumeInput extends VolumeSpec {
  name: string
}

/** Status fields writable through `updateVolumeStatus`; head, epoch and attachment have their own methods. */
export interface VolumeStatusPatch {
  journalReplicas?: string[]
  allocatedBytes?: number
  health?: VolumeHealth
}

// ---------------------------------------------------------------- snapshots

export interface SnapshotStatus {
  /** The volume head's root when the snapshot was taken (null: the volume was empty). */
  rootCid: string | null
  sizeBytes: number
  readyToUse: boolean
  /** RFC 3339. */
  creationTime: string
}

/**
 * A saved head (CRD `Snapshot`). It records the source's block store and policy
 * because restoring reads the same chunks: a restore must use both.
 */
export interface Snapshot extends ObjectMeta {
  volume: string
  blockStore: string
  storagePolicy: string
  status: SnapshotStatus
}

export interface SnapshotInput {
  name: string
  volume: string
}

// ---------------------------------------------------------------- pins

/**
 * A chunk or manifest page that garbage collection keeps although no volume or
 * snapshot refers to it. A pinned manifest page (dag-cbor) keeps its whole tree.
 */
export interface Pin {
  /** Canonical CIDv1 string (base32), raw or dag-cbor codec. */
  cid: string
  /** Why it is pinned; at most 256 characters. */
  note?: string
}

/** Most pins one block store holds (the CRD's `spec.pins` maxItems). */
export const PINS_MAX = 1024

// ---------------------------------------------------------------- listing

export interface ListOptions {
  /** Page size, 1 to 1000. @default 500 */
  limit?: number
  /** Token from the previous page; opaque. Absent or empty: the first page (CSI's empty starting_token). */
  continue?: string
}

export interface SnapshotListOptions extends ListOptions {
  /** Only snapshots of this volume. A continue token only works with the filter it was issued for. */
  volume?: string
}

/** One page, ordered by name. `continue` is absent on the last page. */
export interface Page<T> {
  items: T[]
  continue?: string
}

/** Largest page a caller may ask for. */
export const LIST_LIMIT_MAX = 1000
/** Page size when the caller gives none. */
export const LIST_LIMIT_DEFAULT = 500

// ---------------------------------------------------------------- the interface

/**
 * The control plane. Every method validates its input first (InvalidArgumentError),
 * then acts atomically. A method naming an object that does not exist throws
 * NotFoundError, except deletes, which succeed. Methods called before `start()` or after `stop()` throw
 * ShuttingDownError. Lists are ordered by name; an object that exists for the whole
 * of a paginated list appears in it exactly once.
 */
export interface ControlPlane extends Startable {
  /** Creates a block store; the same spec again returns the existing one; a different spec → AlreadyExistsError. */
  createBlockStore(input: BlockStoreInput): Promise<BlockStore>
  /** The block store, or NotFoundError. */
  getBlockStore(name: string): Promise<BlockStore>
  /** One page of block stores. */
  listBlockStores(options?: ListOptions): Promise<Page<BlockStore>>
  /** Deletes; absent is success; a block store any volume uses → FailedPreconditionError. */
  deleteBlockStore(name: string): Promise<void>
  /** The block store's cluster map (epoch 0, no members, until one is published); NotFoundError if no block store. */
  getClusterMap(blockStore: string): Promise<ClusterMap>
  /** Publishes `map` if `map.epoch` > the current epoch, else ConflictError; returns the stored map. */
  publishClusterMap(blockStore: string, map: ClusterMap): Promise<ClusterMap>

  /** Creates a policy with defaults applied; the same spec again returns it; a different spec → AlreadyExistsError. */
  createStoragePolicy(input: StoragePolicyInput): Promise<StoragePolicy>
  /** The policy, or NotFoundError. */
  getStoragePolicy(name: string): Promise<StoragePolicy>
  /** One page of policies. */
  listStoragePolicies(options?: ListOptions): Promise<Page<StoragePolicy>>
  /** Deletes; absent is success; a policy any volume uses → FailedPreconditionError. */
  deleteStoragePolicy(name: string): Promise<void>

  /**
   * Creates a volume (block store and policy must exist, else NotFoundError); the same spec again returns it;
   * a different spec → AlreadyExistsError. With a source, the head starts at the source's root.
   */
  createVolume(input: VolumeInput): Promise<Volume>
  /** The volume, or NotFoundError. */
  getVolume(name: string): Promise<Volume>
  /** One page of volumes; bad token → InvalidArgumentError, expired token → StaleContinueTokenError. */
  listVolumes(options?: ListOptions): Promise<Page<Volume>>
  /** Grows `sizeBytes`; the same size is a no-op; smaller → InvalidArgumentError. */
  resizeVolume(name: string, sizeBytes: number): Promise<Volume>
  /** Deletes; absent is success; an attached volume, or one with readers → FailedPreconditionError. Snapshots of it remain. */
  deleteVolume(name: string): Promise<void>
  /** Applies `patch` if the volume's revision is `expectedRevision`, else ConflictError. */
  updateVolumeStatus(name: string, expectedRevision: string, patch: VolumeStatusPatch): Promise<Volume>
  /**
   * Replaces the head if the revision is `fence.expectedRevision` (else ConflictError) and `fence.epoch` is the
   * volume's current epoch (else EpochFencedError). The journal sequence never decreases; the size never shrinks.
   */
  updateVolumeHead(name: string, fence: { expectedRevision: string; epoch: number }, head: VolumeHead): Promise<Volume>
  /**
   * If the volume's epoch is `expectedEpoch`, grants `nodeId` a strictly larger epoch and records it as the
   * attachment (taking over from any previous holder), else ConflictError. Of concurrent callers, exactly one wins.
   * `access` is recorded with it; without one, a re-acquire by the same node keeps the access it had.
   */
  acquireEpoch(volume: string, nodeId: string, expectedEpoch: number, access?: AttachmentAccess): Promise<Volume>
  /**
   * Clears the attachment if it is (`nodeId`, `epoch`); otherwise (released, or taken over) changes nothing.
   * The epoch stays. `release.headCurrent` says whether the head now holds every write the holder
   * acknowledged; it sets `status.recoveryPending` to its negation (absent: left as it was).
   */
  releaseAttachment(volume: string, nodeId: string, epoch: number, release?: AttachmentRelease): Promise<Volume>
  /**
   * Records `nodeId` as a reader (read-only publish, no epoch). Already a reader: changes nothing.
   * While a writer holds the attachment → FailedPreconditionError. Concurrent adds all land.
   */
  addReader(volume: string, nodeId: string): Promise<Volume>
  /** Forgets `nodeId` as a reader; not a reader (or never was) changes nothing. Concurrent removes all land. */
  removeReader(volume: string, nodeId: string): Promise<Volume>

  /** Saves the volume's current head as a snapshot (O(1)); the same volume again returns it; another → AlreadyExistsError. */
  createSnapshot(input: SnapshotInput): Promise<Snapshot>
  /** The snapshot, or NotFoundError. */
  getSnapshot(name: string): Promise<Snapshot>
  /** One page of snapshots, optionally of one volume. */
  listSnapshots(options?: SnapshotListOptions): Promise<Page<Snapshot>>
  /** Deletes; absent is success. */
  deleteSnapshot(name: string): Promise<void>

  /** The block store's pins ordered by CID; NotFoundError if no block store. */
  listPins(blockStore: string): Promise<Pin[]>
  /**
   * Pins `pin.cid` (normalised to its canonical form). Pinning a pinned CID again keeps one pin and
   * takes the new note when one is given. More than PINS_MAX pins → FailedPreconditionError.
   */
  addPin(blockStore: string, pin: Pin): Promise<Pin>
  /** Unpins; a CID that is not pinned → NotFoundError (resource 'Pin'). */
  removePin(blockStore: string, cid: string): Promise<void>
}

// ---------------------------------------------------------------- errors

export { InvalidArgumentError, ShuttingDownError } from '../core/errors.js'

/** The named object does not exist. */
export class NotFoundError extends CairnError {
  override readonly name = 'NotFoundError'
  readonly kind = 'not-found'
  constructor(
    readonly resource: ResourceKind | 'Pin',
    readonly resourceName: string,
    options?: { cause?: unknown },
  ) {
    super(`${resource} ${JSON.stringify(resourceName)} not found`, options)
  }
}

/** An object of that name exists with a different spec. */
export class AlreadyExistsError extends CairnError {
  override readonly name = 'AlreadyExistsError'
  readonly kind = 'already-exists'
  constructor(
    readonly resource: ResourceKind,
    readonly resourceName: string,
    options?: { cause?: unknown },
  ) {
    super(`${resource} ${JSON.stringify(resourceName)} already exists with a different spec`, options)
  }
}

/** A compare-and-swap lost: the object changed since the caller read it. Re-read and retry. */
export class ConflictError extends CairnError {
  override readonly name = 'ConflictError'
  readonly kind = 'aborted'
}

/** A continue token has expired (Kubernetes' 410 Gone); restart the list from the beginning. */
export class StaleContinueTokenError extends CairnError {
  override readonly name = 'StaleContinueTokenError'
  readonly kind = 'aborted'
}

/** The request is valid but the object's state forbids it (in use, attached). */
export class FailedPreconditionError extends CairnError {
  override readonly name = 'FailedPreconditionError'
  readonly kind = 'failed-precondition'
}

/** The caller's epoch is not the volume's current one: another node took over, so this one may no longer write. */
export class EpochFencedError extends CairnError {
  override readonly name = 'EpochFencedError'
  readonly kind = 'failed-precondition'
  constructor(
    readonly volume: string,
    readonly epoch: number,
    readonly currentEpoch: number,
  ) {
    super(`volume ${JSON.stringify(volume)}: epoch ${epoch} is fenced, the current epoch is ${currentEpoch}`)
  }
}
