/**
 * The Local control plane: the ControlPlane contract over one better-sqlite3 file,
 * for `cairn dev` and tests.
 *
 * Several processes may share the file (`cairn dev` and a CSI driver started in the
 * same working directory): WAL lets readers run beside a writer, busy_timeout makes
 * a writer wait for another process's lock instead of failing, and every
 * read-check-write runs in one BEGIN IMMEDIATE transaction, which is what makes the
 * compare-and-swaps hold across processes.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../core/logger.js'
import { InvalidArgumentError, ShuttingDownError } from '../../core/errors.js'
import {
  AlreadyExistsError,
  ConflictError,
  FailedPreconditionError,
  NotFoundError,
  PINS_MAX,
  type BlockStore,
  type BlockStoreInput,
  type ClusterMap,
  type ControlPlane,
  type ListOptions,
  type Page,
  type Pin,
  type ResourceKind,
  type Snapshot,
  type SnapshotInput,
  type SnapshotListOptions,
  type StoragePolicy,
  type StoragePolicyInput,
  type Volume,
  type AttachmentAccess,
  type AttachmentRelease,
  type VolumeHead,
  type VolumeInput,
  type VolumeStatusPatch,
} from '../types.js'
import {
  resolveBlockStore,
  validateBlockStoreName,
  resolveLimit,
  resolveStoragePolicy,
  resolveVolume,
  sameSpec,
  validateClusterMap,
  validateHead,
  validateName,
  validateStatusPatch,
} from '../validate.js'
import * as t from '../transitions.js'
import { canonicalPinCid, validatePin, withPin } from '../pins.js'
import { ObjectStore, type ListFilter } from './object-store.js'
import { decodeContinueToken, encodeContinueToken } from './continue-token.js'
import { SCHEMA_VERSION } from './schema.js'

export interface LocalControlPlaneInit {
  /** The SQLite file; created with its directory if missing. `:memory:` for a private, unshared store. */
  path: string
  /** How long a write waits for another process's lock before failing. @default 5000 */
  busyTimeoutMs?: number
  /** Age after which a continue token is refused as stale. @default 300000 (etcd's compaction interval) */
  continueTokenTtlMs?: number
}

export interface LocalControlPlaneDeps {
  logger: Logger
  /** Milliseconds since the epoch; injectable so tests can age continue tokens. @default Date.now */
  clock?: () => number
}

/** How many users an "in use" error names; the rest are elided. */
const IN_USE_NAMES_MAX = 5

export class LocalControlPlane implements ControlPlane {
  private store: ObjectStore | undefined
  private stopped = false
  private readonly busyTimeoutMs: number
  private readonly continueTokenTtlMs: number
  private readonly clock: () => number

  constructor(
    private readonly init: LocalControlPlaneInit,
    private readonly deps: LocalControlPlaneDeps,
  ) {
    this.busyTimeoutMs = init.busyTimeoutMs ?? 5000
    this.continueTokenTtlMs = init.continueTokenTtlMs ?? 300_000
    this.clock = deps.clock ?? Date.now
  }

  async start(): Promise<void> {
    if (this.stopped) throw new ShuttingDownError('local control plane was stopped; create a new one')
    if (this.store !== undefined) return
    this.store = new ObjectStore({ path: this.init.path, busyTimeoutMs: this.busyTimeoutMs, nowIso: this.nowIso() })
    const found = this.store.schemaVersionFound
    this.deps.logger.info({ path: this.init.path, schemaVersion: SCHEMA_VERSION, migratedFrom: found }, 'control plane open')
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.store === undefined) return
    this.store.close()
    this.store = undefined
    this.deps.logger.info({ path: this.init.path }, 'control plane closed')
  }

  // ---------------------------------------------------------------- block stores

  async createBlockStore(input: BlockStoreInput): Promise<BlockStore> {
    const { name, spec } = resolveBlockStore(input)
    validateBlockStoreName('name', name)
    return this.createOnce('BlockStore', name, spec, (birth) => ({
      name,
      uid: birth.uid,
      revision: '',
      creationTime: birth.nowIso,
      ...spec,
      status: { clusterMap: { epoch: 0, members: [] } },
    }))
  }

  async getBlockStore(name: string): Promise<BlockStore> {
    return this.mustGet<BlockStore>('BlockStore', name)
  }

  async listBlockStores(options?: ListOptions): Promise<Page<BlockStore>> {
    return this.list<BlockStore>('BlockStore', options, undefined)
  }

  async deleteBlockStore(name: string): Promise<void> {
    this.deleteUnused('BlockStore', name, 'blockStore')
  }

  async getClusterMap(blockStore: string): Promise<ClusterMap> {
    return (await this.getBlockStore(blockStore)).status.clusterMap
  }

  async publishClusterMap(blockStore: string, map: ClusterMap): Promise<ClusterMap> {
    validateName('blockStore', blockStore)
    const next = validateClusterMap(map)
    const store = this.open()
    return store.write(() => {
      const current = this.mustGetIn<BlockStore>(store, 'BlockStore', blockStore)
      const epoch = current.status.clusterMap.epoch
      if (next.epoch <= epoch) {
        throw new ConflictError(`block store ${blockStore}: cluster map epoch ${next.epoch} is not after ${epoch}`)
      }
      store.put('BlockStore', blockStore, { ...current, status: { clusterMap: next } })
      return next
    })
  }

  // ---------------------------------------------------------------- policies

  async createStoragePolicy(input: StoragePolicyInput): Promise<StoragePolicy> {
    const { name, spec } = resolveStoragePolicy(input)
    return this.createOnce('StoragePolicy', name, spec, (birth) => ({
      name,
      uid: birth.uid,
      revision: '',
      creationTime: birth.nowIso,
      ...spec,
    }))
  }

  async getStoragePolicy(name: string): Promise<StoragePolicy> {
    return this.mustGet<StoragePolicy>('StoragePolicy', name)
  }

  async listStoragePolicies(options?: ListOptions): Promise<Page<StoragePolicy>> {
    return this.list<StoragePolicy>('StoragePolicy', options, undefined)
  }

  async deleteStoragePolicy(name: string): Promise<void> {
    this.deleteUnused('StoragePolicy', name, 'storagePolicy')
  }

  // ---------------------------------------------------------------- volumes

  async createVolume(input: VolumeInput): Promise<Volume> {
    const { name, spec } = resolveVolume(input)
    const store = this.open()
    return store.write(() => {
      const existing = store.get<Volume>('Volume', name)
      if (existing !== undefined) return this.sameOrConflict('Volume', existing, spec, specOfVolume(existing))
      this.mustGetIn<BlockStore>(store, 'BlockStore', spec.blockStore)
      this.mustGetIn<StoragePolicy>(store, 'StoragePolicy', spec.storagePolicy)
      let source: t.SourceHead | undefined
      if (spec.source !== undefined && 'snapshot' in spec.source) {
        source = t.sourceFromSnapshot(this.mustGetIn<Snapshot>(store, 'Snapshot', spec.source.snapshot))
      } else if (spec.source !== undefined) {
        source = t.sourceFromVolume(this.mustGetIn<Volume>(store, 'Volume', spec.source.volume))
      }
      return this.insert(store, 'Volume', t.newVolume(name, spec, this.birth(), source))
    })
  }

  async getVolume(name: string): Promise<Volume> {
    return this.mustGet<Volume>('Volume', name)
  }

  async listVolumes(options?: ListOptions): Promise<Page<Volume>> {
    return this.list<Volume>('Volume', options, undefined)
  }

  async resizeVolume(name: string, sizeBytes: number): Promise<Volume> {
    return this.updateVolume(name, (v) => t.resized(v, sizeBytes))
  }

  async deleteVolume(name: string): Promise<void> {
    validateName('name', name)
    const store = this.open()
    store.write(() => {
      const volume = store.get<Volume>('Volume', name)
      if (volume === undefined) return
      t.checkDeletable(volume)
      store.delete('Volume', name)
    })
  }

  async updateVolumeStatus(name: string, expectedRevision: string, patch: VolumeStatusPatch): Promise<Volume> {
    const valid = validateStatusPatch(patch)
    return this.updateVolume(name, (v) => {
      t.checkRevision(v, expectedRevision)
      return t.withStatusPatch(v, valid)
    })
  }

  async updateVolumeHead(
    name: string,
    fence: { expectedRevision: string; epoch: number },
    head: VolumeHead,
  ): Promise<Volume> {
    const valid = validateHead(head)
    if (typeof fence !== 'object' || fence === null) throw new InvalidArgumentError('fence: must be {expectedRevision, epoch}')
    return this.updateVolume(name, (v) => {
      t.checkRevision(v, fence.expectedRevision)
      return t.withHead(v, fence.epoch, valid)
    })
  }

  async acquireEpoch(volume: string, nodeId: string, expectedEpoch: number, access?: AttachmentAccess): Promise<Volume> {
    const updated = await this.updateVolume(volume, (v) => t.withAcquiredEpoch(v, nodeId, expectedEpoch, this.nowIso(), access))
    const attachment = updated.status.attachment
    this.deps.logger.info({ volume, nodeId, epoch: attachment?.epoch }, 'epoch granted')
    return updated
  }

  async releaseAttachment(volume: string, nodeId: string, epoch: number, release?: AttachmentRelease): Promise<Volume> {
    return this.updateVolume(volume, (v) => t.withReleased(v, nodeId, epoch, release))
  }

  async addReader(volume: string, nodeId: string): Promise<Volume> {
    return this.updateVolume(volume, (v) => t.withReader(v, nodeId))
  }

  async removeReader(volume: string, nodeId: string): Promise<Volume> {
    return this.updateVolume(volume, (v) => t.withoutReader(v, nodeId))
  }

  // ---------------------------------------------------------------- snapshots

  async createSnapshot(input: SnapshotInput): Promise<Snapshot> {
    const name = validateName('name', input?.name)
    const volumeName = validateName('volume', input?.volume)
    const store = this.open()
    return store.write(() => {
      const existing = store.get<Snapshot>('Snapshot', name)
      if (existing !== undefined) return this.sameOrConflict('Snapshot', existing, volumeName, existing.volume)
      const volume = this.mustGetIn<Volume>(store, 'Volume', volumeName)
      return this.insert(store, 'Snapshot', t.newSnapshot(name, volume, this.birth()))
    })
  }

  async getSnapshot(name: string): Promise<Snapshot> {
    return this.mustGet<Snapshot>('Snapshot', name)
  }

  async listSnapshots(options?: SnapshotListOptions): Promise<Page<Snapshot>> {
    const volume = options?.volume === undefined ? undefined : validateName('volume', options.volume)
    return this.list<Snapshot>('Snapshot', options, volume === undefined ? undefined : { kind: 'Snapshot', volume })
  }

  async deleteSnapshot(name: string): Promise<void> {
    validateName('name', name)
    this.open().delete('Snapshot', name)
  }

  // ---------------------------------------------------------------- pins

  async listPins(blockStore: string): Promise<Pin[]> {
    validateName('blockStore', blockStore)
    const store = this.open()
    this.mustGetIn<BlockStore>(store, 'BlockStore', blockStore)
    return store.pins(blockStore)
  }

  async addPin(blockStore: string, pin: Pin): Promise<Pin> {
    validateName('blockStore', blockStore)
    const valid = validatePin(pin)
    const store = this.open()
    return store.write(() => {
      this.mustGetIn<BlockStore>(store, 'BlockStore', blockStore)
      const current = store.pins(blockStore)
      const next = withPin(current, valid)
      if (!next.changed) return next.stored
      if (next.pins.length > PINS_MAX) throw new FailedPreconditionError(`block store ${blockStore} already holds ${PINS_MAX} pins`)
      store.putPin(blockStore, next.stored)
      return next.stored
    })
  }

  async removePin(blockStore: string, cid: string): Promise<void> {
    validateName('blockStore', blockStore)
    const canonical = canonicalPinCid(cid)
    const store = this.open()
    store.write(() => {
      this.mustGetIn<BlockStore>(store, 'BlockStore', blockStore)
      if (!store.deletePin(blockStore, canonical)) throw new NotFoundError('Pin', canonical)
    })
  }

  // ---------------------------------------------------------------- helpers

  private open(): ObjectStore {
    if (this.store === undefined) throw new ShuttingDownError('local control plane is not started, or stopped')
    return this.store
  }

  private nowIso(): string {
    return new Date(this.clock()).toISOString()
  }

  private birth(): t.Birth {
    return { uid: randomUUID(), nowIso: this.nowIso() }
  }

  private mustGetIn<T>(store: ObjectStore, kind: ResourceKind, name: string): T {
    const found = store.get<T>(kind, name)
    if (found === undefined) throw new NotFoundError(kind, name)
    return found
  }

  private mustGet<T>(kind: ResourceKind, name: string): T {
    validateName('name', name)
    return this.mustGetIn<T>(this.open(), kind, name)
  }

  private insert<T extends { name: string; revision: string }>(store: ObjectStore, kind: ResourceKind, object: T): T {
    return { ...object, revision: store.put(kind, object.name, object) }
  }

  /** Idempotent create: returns the existing object when its spec is `spec`, else AlreadyExistsError. */
  private sameOrConflict<T extends { name: string }>(kind: ResourceKind, existing: T, spec: unknown, existingSpec: unknown): T {
    if (!sameSpec(spec, existingSpec)) throw new AlreadyExistsError(kind, existing.name)
    return existing
  }

  private createOnce<T extends { name: string; revision: string }>(
    kind: ResourceKind,
    name: string,
    spec: object,
    build: (birth: t.Birth) => T,
  ): T {
    const store = this.open()
    return store.write(() => {
      const existing = store.get<T>(kind, name)
      if (existing !== undefined) {
        const stored = Object.fromEntries(Object.keys(spec).map((k) => [k, (existing as Record<string, unknown>)[k]]))
        return this.sameOrConflict(kind, existing, spec, stored)
      }
      return this.insert(store, kind, build(this.birth()))
    })
  }

  /** Read, transition, write, in one IMMEDIATE transaction. `change` returns undefined for "nothing to write". */
  private async updateVolume(name: string, change: (v: Volume) => Volume | undefined): Promise<Volume> {
    validateName('name', name)
    const store = this.open()
    return store.write(() => {
      const current = this.mustGetIn<Volume>(store, 'Volume', name)
      const next = change(current)
      return next === undefined ? current : this.insert(store, 'Volume', next)
    })
  }

  private deleteUnused(kind: 'BlockStore' | 'StoragePolicy', name: string, field: 'blockStore' | 'storagePolicy'): void {
    validateName('name', name)
    const store = this.open()
    store.write(() => {
      const users = store.volumesUsing(field, name, IN_USE_NAMES_MAX + 1)
      if (users.length > 0) {
        const shown = users.slice(0, IN_USE_NAMES_MAX).join(', ') + (users.length > IN_USE_NAMES_MAX ? ', …' : '')
        throw new FailedPreconditionError(`${kind} ${name} is used by volumes ${shown}`)
      }
      store.delete(kind, name)
      if (kind === 'BlockStore') store.deletePinsOf(name)
    })
  }

  private list<T extends { name: string }>(
    kind: ResourceKind,
    options: ListOptions | undefined,
    filter: ListFilter | undefined,
  ): Page<T> {
    const limit = resolveLimit(options?.limit)
    const filterKey = filter === undefined ? null : filter.volume
    const after =
      options?.continue === undefined || options.continue === ''
        ? ''
        : decodeContinueToken(options.continue, { kind, filter: filterKey }, this.clock(), this.continueTokenTtlMs)
    // One extra row tells whether another page exists without a second query.
    const rows = this.open().list<T>(kind, after, limit + 1, filter)
    if (rows.length <= limit) return { items: rows }
    const items = rows.slice(0, limit)
    const last = items[items.length - 1]!.name
    return { items, continue: encodeContinueToken({ kind, filter: filterKey, after: last }, this.clock()) }
  }
}

/** The fields of a volume that its creator chose, to compare an idempotent create against. */
function specOfVolume(v: Volume): object {
  const spec: Record<string, unknown> = { blockStore: v.blockStore, storagePolicy: v.storagePolicy, sizeBytes: v.sizeBytes }
  if (v.source !== undefined) spec.source = v.source
  return spec
}

/** Creates a Local control plane; call `start()` to open the file. */
export function createLocalControlPlane(init: LocalControlPlaneInit, deps: LocalControlPlaneDeps): LocalControlPlane {
  return new LocalControlPlane(init, deps)
}
