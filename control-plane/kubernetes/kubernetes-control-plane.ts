/**
 * The Kubernetes control plane: the ControlPlane contract over the cairn.dev/v1alpha1
 * custom resources, through @kubernetes/client-node.
 *
 * Every change is read → transition (control-plane/transitions.ts) → write with the
 * resourceVersion that was read. A 409 Conflict means someone else wrote first: the
 * operation re-reads and re-decides, so a compare the caller asked for (an expected
 * revision or epoch) fails with ConflictError as soon as its field moved, while a
 * write that only collided with an unrelated change (the operator's conditions, a
 * health report) is retried, a bounded number of times, without losing either side.
 * Status goes through the /status subresource and keeps every field Cairn does not own.
 */
import { KubeConfig, CustomObjectsApi } from '@kubernetes/client-node'
import type { Logger } from '../../core/logger.js'
import { assert, InvalidArgumentError, ShuttingDownError } from '../../core/errors.js'
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
  type VolumeSpec,
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
import * as c from './convert.js'
import { IN_USE_FINALIZER, PLURAL, SNAPSHOT_FINALIZER, SNAPSHOT_VOLUME_LABEL, VOLUME_FINALIZER, labelValueFor } from './constants.js'
import { decodeContinueToken, encodeContinueToken } from './continue-token.js'
import { KubernetesApiError, KubernetesPermissionDeniedError } from './errors.js'
import { CairnObjects } from './objects.js'
import { isTerminating, type CustomResource } from './resource.js'

export interface KubernetesControlPlaneInit {
  /** Where the API server is: `loadFromCluster()` in a pod, `loadFromFile()` elsewhere. */
  kubeConfig: KubeConfig
  /**
   * What a StoragePolicy created through this interface names in `spec.blockStore`,
   * which the CRD requires and the ControlPlane's policies do not carry. @default 'default'
   */
  policyBlockStore?: string
  /** Deadline of each API request; a request past it fails with KubernetesUnavailableError. @default 30000 */
  requestTimeoutMs?: number
  /** Re-reads after a 409 that did not touch the compared field, before giving up with ConflictError. @default 16 */
  conflictRetriesMax?: number
}

export interface KubernetesControlPlaneDeps {
  logger: Logger
}

/** How many users an "in use" error names; the rest are elided. */
const IN_USE_NAMES_MAX = 5
/** Page size of the internal scans (volumes using a block store or policy). */
const SCAN_PAGE_SIZE = 500
/** Cap on the jittered pause between conflict retries. */
const RETRY_PAUSE_MAX_MS = 50

export class KubernetesControlPlane implements ControlPlane {
  private state: 'new' | 'started' | 'stopped' = 'new'
  private readonly objects: CairnObjects
  private readonly policyBlockStore: string
  private readonly conflictRetriesMax: number

  constructor(
    init: KubernetesControlPlaneInit,
    private readonly deps: KubernetesControlPlaneDeps,
  ) {
    this.objects = new CairnObjects(init.kubeConfig.makeApiClient(CustomObjectsApi), init.requestTimeoutMs ?? 30_000)
    this.policyBlockStore = validateName('policyBlockStore', init.policyBlockStore ?? 'default')
    this.conflictRetriesMax = init.conflictRetriesMax ?? 16
  }

  /**
   * Checks that the four CRDs are served, so a missing install fails here and not on
   * first use. A kind the credentials may not list (403) is skipped: least-privilege
   * RBAC withholds kinds a client never uses (the CSI node plugin and its engines read
   * no snapshots), and a 403 says nothing about the install. Forbidden on every kind,
   * the credentials can do nothing with Cairn, and start fails with that error.
   * @throws FailedPreconditionError when a CRD is not installed
   * @throws KubernetesPermissionDeniedError when no kind may be listed at all
   */
  async start(): Promise<void> {
    if (this.state === 'stopped') throw new ShuttingDownError('kubernetes control plane was stopped; create a new one')
    if (this.state === 'started') return
    let forbidden: KubernetesPermissionDeniedError | undefined
    let listed = 0
    for (const kind of Object.keys(PLURAL) as ResourceKind[]) {
      try {
        await this.objects.list(kind, { limit: 1 })
        listed++
      } catch (err) {
        if (err instanceof NotFoundError) {
          throw new FailedPreconditionError(`CRD ${PLURAL[kind]}.cairn.dev is not installed (apply crds/)`, { cause: err })
        }
        if (!(err instanceof KubernetesPermissionDeniedError) || (err.cause as KubernetesApiError | undefined)?.code !== 403) throw err
        forbidden ??= err
        this.deps.logger.debug({ kind }, 'may not list this kind; not checking that its CRD is installed')
      }
    }
    if (listed === 0 && forbidden !== undefined) throw forbidden
    this.state = 'started'
    this.deps.logger.info('kubernetes control plane started')
  }

  async stop(): Promise<void> {
    this.state = 'stopped'
  }

  // ---------------------------------------------------------------- block stores

  async createBlockStore(input: BlockStoreInput): Promise<BlockStore> {
    this.open()
    const { name, spec } = resolveBlockStore(input)
    validateBlockStoreName('name', name)
    return this.createOnce('BlockStore', name, c.blockStoreToCr(name, spec), spec, c.blockStoreSpecOf, c.blockStoreFromCr)
  }

  async getBlockStore(name: string): Promise<BlockStore> {
    return c.blockStoreFromCr(await this.mustGet('BlockStore', name))
  }

  async listBlockStores(options?: ListOptions): Promise<Page<BlockStore>> {
    return this.list('BlockStore', options, undefined, c.blockStoreFromCr)
  }

  async deleteBlockStore(name: string): Promise<void> {
    return this.deleteUnused('BlockStore', name, 'blockStore')
  }

  async getClusterMap(blockStore: string): Promise<ClusterMap> {
    return c.clusterMapFromCr(await this.mustGet('BlockStore', blockStore))
  }

  async publishClusterMap(blockStore: string, map: ClusterMap): Promise<ClusterMap> {
    this.open()
    validateName('blockStore', blockStore)
    const next = c.clusterMapToCr(validateClusterMap(map))
    return this.retryingConflicts(async () => {
      const cr = await this.mustGet('BlockStore', blockStore)
      const epoch = c.clusterMapFromCr(cr).epoch
      if (next.stored.epoch <= epoch) {
        throw new ConflictError(`block store ${blockStore}: cluster map epoch ${next.stored.epoch} is not after ${epoch}`)
      }
      const written = await this.objects.replaceStatus('BlockStore', { ...cr, status: { ...cr.status, clusterMap: next.cr } })
      return c.clusterMapFromCr(written)
    })
  }

  // ---------------------------------------------------------------- policies

  async createStoragePolicy(input: StoragePolicyInput): Promise<StoragePolicy> {
    this.open()
    const { name, spec } = resolveStoragePolicy(input)
    const specOf = (cr: CustomResource): object => {
      const { name: _n, uid: _u, revision: _r, creationTime: _c, ...stored } = c.storagePolicyFromCr(cr)
      return stored
    }
    return this.createOnce('StoragePolicy', name, c.storagePolicyToCr(name, spec, this.policyBlockStore), spec, specOf, c.storagePolicyFromCr)
  }

  async getStoragePolicy(name: string): Promise<StoragePolicy> {
    return c.storagePolicyFromCr(await this.mustGet('StoragePolicy', name))
  }

  async listStoragePolicies(options?: ListOptions): Promise<Page<StoragePolicy>> {
    return this.list('StoragePolicy', options, undefined, c.storagePolicyFromCr)
  }

  async deleteStoragePolicy(name: string): Promise<void> {
    return this.deleteUnused('StoragePolicy', name, 'storagePolicy')
  }

  // ---------------------------------------------------------------- volumes

  async createVolume(input: VolumeInput): Promise<Volume> {
    this.open()
    const { name, spec } = resolveVolume(input)
    const existing = await this.objects.get('Volume', name)
    if (existing !== undefined) return this.existingVolume(existing, spec)
    await this.mustGet('BlockStore', spec.blockStore)
    await this.mustGet('StoragePolicy', spec.storagePolicy)
    const draft = t.newVolume(name, spec, { uid: '', nowIso: '' }, await this.sourceOf(spec))
    let created: CustomResource
    try {
      created = await this.objects.create(c.volumeToCr(name, spec, draft.status.head))
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err
      return this.existingVolume(await this.mustGetAny('Volume', name), spec)
    }
    await this.backOutIfReferenceGoes(created, spec)
    return this.materializeVolume(created)
  }

  async getVolume(name: string): Promise<Volume> {
    return c.volumeFromCr(await this.mustGet('Volume', name))
  }

  async listVolumes(options?: ListOptions): Promise<Page<Volume>> {
    return this.list('Volume', options, undefined, c.volumeFromCr)
  }

  async resizeVolume(name: string, sizeBytes: number): Promise<Volume> {
    return this.updateVolume(name, (v) => t.resized(v, sizeBytes))
  }

  /**
   * Marks the volume deleted (only the incarnation and revision that was checked to be
   * detached), then removes its finalizer itself when it has no journal replicas to
   * clean; otherwise the operator removes it after dropping the journal.
   */
  async deleteVolume(name: string): Promise<void> {
    this.open()
    validateName('name', name)
    await this.retryingConflicts(async () => {
      let cr = await this.objects.get('Volume', name)
      if (cr === undefined) return
      if (!isTerminating(cr)) {
        t.checkDeletable(c.volumeFromCr(cr))
        await this.objects.delete('Volume', name, { uid: cr.metadata.uid, resourceVersion: cr.metadata.resourceVersion })
        cr = await this.objects.get('Volume', name)
        if (cr === undefined) return
      }
      const replicas = cr.status?.journalReplicas
      if (Array.isArray(replicas) && replicas.length > 0) return
      await this.dropFinalizer('Volume', cr, VOLUME_FINALIZER)
    })
  }

  async updateVolumeStatus(name: string, expectedRevision: string, patch: VolumeStatusPatch): Promise<Volume> {
    const valid = validateStatusPatch(patch)
    return this.updateVolume(name, (v) => {
      t.checkRevision(v, expectedRevision)
      return t.withStatusPatch(v, valid)
    })
  }

  async updateVolumeHead(name: string, fence: { expectedRevision: string; epoch: number }, head: VolumeHead): Promise<Volume> {
    const valid = validateHead(head)
    if (typeof fence !== 'object' || fence === null) throw new InvalidArgumentError('fence: must be {expectedRevision, epoch}')
    return this.updateVolume(name, (v) => {
      t.checkRevision(v, fence.expectedRevision)
      return t.withHead(v, fence.epoch, valid)
    })
  }

  async acquireEpoch(volume: string, nodeId: string, expectedEpoch: number, access?: AttachmentAccess): Promise<Volume> {
    const updated = await this.updateVolume(volume, (v) => t.withAcquiredEpoch(v, nodeId, expectedEpoch, new Date().toISOString(), access))
    this.deps.logger.info({ volume, nodeId, epoch: updated.status.epoch, uid: updated.uid }, 'epoch granted')
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
    this.open()
    const name = validateName('name', input?.name)
    const volumeName = validateName('volume', input?.volume)
    const existing = await this.objects.get('Snapshot', name)
    if (existing !== undefined) return this.existingSnapshot(existing, volumeName)
    const volume = c.volumeFromCr(await this.mustGet('Volume', volumeName))
    const draft = t.newSnapshot(name, volume, { uid: '', nowIso: '' })
    let created: CustomResource
    try {
      created = await this.objects.create(c.snapshotToCr(draft))
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err
      return this.existingSnapshot(await this.mustGetAny('Snapshot', name), volumeName)
    }
    return this.materializeSnapshot(created)
  }

  async getSnapshot(name: string): Promise<Snapshot> {
    return c.snapshotFromCr(await this.mustGet('Snapshot', name))
  }

  async listSnapshots(options?: SnapshotListOptions): Promise<Page<Snapshot>> {
    const volume = options?.volume === undefined ? undefined : validateName('volume', options.volume)
    return this.list('Snapshot', options, volume, c.snapshotFromCr)
  }

  /** A snapshot is only a garbage-collection root: nothing to clean, so delete removes its finalizer too. */
  async deleteSnapshot(name: string): Promise<void> {
    this.open()
    validateName('name', name)
    await this.retryingConflicts(async () => {
      let cr = await this.objects.get('Snapshot', name)
      if (cr === undefined) return
      if (!isTerminating(cr)) {
        await this.objects.delete('Snapshot', name, { uid: cr.metadata.uid })
        cr = await this.objects.get('Snapshot', name)
        if (cr === undefined) return
      }
      await this.dropFinalizer('Snapshot', cr, SNAPSHOT_FINALIZER)
    })
  }

  // ---------------------------------------------------------------- pins

  async listPins(blockStore: string): Promise<Pin[]> {
    this.open()
    validateName('blockStore', blockStore)
    return c.pinsFromCr(await this.mustGet('BlockStore', blockStore))
  }

  /** Pins live in the BlockStore's `spec.pins`: a read-modify-replace with the read resourceVersion. */
  async addPin(blockStore: string, pin: Pin): Promise<Pin> {
    this.open()
    validateName('blockStore', blockStore)
    const valid = validatePin(pin)
    return this.retryingConflicts(async () => {
      const cr = await this.mustGet('BlockStore', blockStore)
      const next = withPin(c.pinsFromCr(cr), valid)
      if (!next.changed) return next.stored
      if (next.pins.length > PINS_MAX) throw new FailedPreconditionError(`block store ${blockStore} already holds ${PINS_MAX} pins`)
      await this.objects.replace('BlockStore', { ...cr, spec: { ...cr.spec, pins: next.pins } })
      return next.stored
    })
  }

  async removePin(blockStore: string, cid: string): Promise<void> {
    this.open()
    validateName('blockStore', blockStore)
    const canonical = canonicalPinCid(cid)
    await this.retryingConflicts(async () => {
      const cr = await this.mustGet('BlockStore', blockStore)
      const pins = c.pinsFromCr(cr)
      if (!pins.some((p) => p.cid === canonical)) throw new NotFoundError('Pin', canonical)
      await this.objects.replace('BlockStore', { ...cr, spec: { ...cr.spec, pins: pins.filter((p) => p.cid !== canonical) } })
    })
  }

  // ---------------------------------------------------------------- helpers

  private open(): void {
    if (this.state !== 'started') throw new ShuttingDownError('kubernetes control plane is not started, or stopped')
  }

  /** The live object (not being deleted), or NotFoundError. */
  private async mustGet(kind: ResourceKind, name: string): Promise<CustomResource> {
    this.open()
    validateName('name', name)
    const cr = await this.objects.get(kind, name)
    if (cr === undefined || isTerminating(cr)) throw new NotFoundError(kind, name)
    return cr
  }

  /** The object even while it is being deleted, or NotFoundError. */
  private async mustGetAny(kind: ResourceKind, name: string): Promise<CustomResource> {
    const cr = await this.objects.get(kind, name)
    if (cr === undefined) throw new NotFoundError(kind, name)
    return cr
  }

  /**
   * Runs `attempt` again when its write lost a resourceVersion race (a 409 from the
   * API server, not a ConflictError the transition itself decided), with a short
   * jittered pause so racing writers spread out. Bounded by `conflictRetriesMax`.
   */
  private async retryingConflicts<T>(attempt: () => Promise<T>): Promise<T> {
    for (let retry = 0; ; retry++) {
      try {
        return await attempt()
      } catch (err) {
        const lostRace = err instanceof ConflictError && err.cause instanceof KubernetesApiError
        if (!lostRace || retry >= this.conflictRetriesMax) throw err
        const pauseMs = Math.random() * Math.min(RETRY_PAUSE_MAX_MS, 2 ** retry)
        await new Promise((resolve) => setTimeout(resolve, pauseMs))
      }
    }
  }

  /** Read, transition, write with the read resourceVersion. `change` returns undefined for "nothing to write". */
  private async updateVolume(name: string, change: (v: Volume) => Volume | undefined): Promise<Volume> {
    this.open()
    validateName('name', name)
    return this.retryingConflicts(async () => {
      const cr = await this.mustGet('Volume', name)
      const current = c.volumeFromCr(cr)
      const next = change(current)
      if (next === undefined) return current
      if (next.sizeBytes !== current.sizeBytes) {
        return c.volumeFromCr(await this.objects.replace('Volume', { ...cr, spec: { ...cr.spec, sizeBytes: next.sizeBytes } }))
      }
      // Fencing rests on this: no write path may lower an epoch, whatever a caller asked for.
      assert(next.status.epoch >= current.status.epoch, `volume ${name}: epoch would go from ${current.status.epoch} to ${next.status.epoch}`)
      return c.volumeFromCr(await this.objects.replaceStatus('Volume', c.withVolumeStatus(cr, next.status)))
    })
  }

  private async sourceOf(spec: VolumeSpec): Promise<t.SourceHead | undefined> {
    if (spec.source === undefined) return undefined
    if ('snapshot' in spec.source) return t.sourceFromSnapshot(c.snapshotFromCr(await this.mustGet('Snapshot', spec.source.snapshot)))
    return t.sourceFromVolume(c.volumeFromCr(await this.mustGet('Volume', spec.source.volume)))
  }

  private async existingVolume(cr: CustomResource, spec: VolumeSpec): Promise<Volume> {
    if (isTerminating(cr)) throw new FailedPreconditionError(`volume ${cr.metadata.name} is being deleted; retry once it is gone`)
    const v = c.volumeFromCr(cr)
    const stored: Record<string, unknown> = { blockStore: v.blockStore, storagePolicy: v.storagePolicy, sizeBytes: v.sizeBytes }
    if (v.source !== undefined) stored.source = v.source
    if (!sameSpec(spec, stored)) throw new AlreadyExistsError('Volume', v.name)
    return this.materializeVolume(cr)
  }

  /** Writes the status of a just-created volume (the API server ignores status on create). */
  private async materializeVolume(created: CustomResource): Promise<Volume> {
    let cr = created
    return this.retryingConflicts(async () => {
      if (c.hasVolumeStatus(cr)) return c.volumeFromCr(cr)
      const v = c.volumeFromCr(cr)
      try {
        return c.volumeFromCr(await this.objects.replaceStatus('Volume', c.withVolumeStatus(cr, v.status)))
      } catch (err) {
        cr = await this.mustGetAny('Volume', cr.metadata.name)
        throw err
      }
    })
  }

  /**
   * Closes the race with a concurrent delete of the volume's block store or policy:
   * their deleter marks them deleting before its last look for users, so if they are
   * not marked now, that look will see this volume. If they are, this volume goes.
   */
  private async backOutIfReferenceGoes(created: CustomResource, spec: VolumeSpec): Promise<void> {
    const refs: [ResourceKind, string][] = [['BlockStore', spec.blockStore], ['StoragePolicy', spec.storagePolicy]]
    for (const [kind, name] of refs) {
      const cr = await this.objects.get(kind, name)
      if (cr !== undefined && !isTerminating(cr)) continue
      const volume = created.metadata.name
      await this.objects.delete('Volume', volume, { uid: created.metadata.uid })
      const left = await this.objects.get('Volume', volume)
      if (left !== undefined && left.metadata.uid === created.metadata.uid) await this.dropFinalizer('Volume', left, VOLUME_FINALIZER)
      throw cr === undefined ? new NotFoundError(kind, name) : new FailedPreconditionError(`${kind} ${name} is being deleted`)
    }
  }

  private async existingSnapshot(cr: CustomResource, volume: string): Promise<Snapshot> {
    if (isTerminating(cr)) throw new FailedPreconditionError(`snapshot ${cr.metadata.name} is being deleted; retry once it is gone`)
    const s = c.snapshotFromCr(cr)
    if (s.volume !== volume) throw new AlreadyExistsError('Snapshot', s.name)
    return this.materializeSnapshot(cr)
  }

  private async materializeSnapshot(created: CustomResource): Promise<Snapshot> {
    let cr = created
    return this.retryingConflicts(async () => {
      const s = c.snapshotFromCr(cr)
      if (c.hasSnapshotStatus(cr)) return s
      try {
        return c.snapshotFromCr(await this.objects.replaceStatus('Snapshot', c.withSnapshotReady(cr, s)))
      } catch (err) {
        cr = await this.mustGetAny('Snapshot', cr.metadata.name)
        throw err
      }
    })
  }

  /** Removes `finalizer` with a CAS on the resourceVersion; the object goes once none is left. */
  private async dropFinalizer(kind: ResourceKind, cr: CustomResource, finalizer: string): Promise<void> {
    const finalizers = cr.metadata.finalizers ?? []
    if (!finalizers.includes(finalizer)) return
    const next = { ...cr, metadata: { ...cr.metadata, finalizers: finalizers.filter((f) => f !== finalizer) } }
    try {
      await this.objects.replace(kind, next)
    } catch (err) {
      if (err instanceof NotFoundError) return
      throw err
    }
  }

  /** Idempotent create: the stored object when its spec is `spec`, else AlreadyExistsError. */
  private async createOnce<T>(
    kind: ResourceKind,
    name: string,
    body: ReturnType<typeof c.blockStoreToCr>,
    spec: object,
    specOf: (cr: CustomResource) => object,
    fromCr: (cr: CustomResource) => T,
  ): Promise<T> {
    const same = (cr: CustomResource): T => {
      if (isTerminating(cr)) throw new FailedPreconditionError(`${kind} ${name} is being deleted; retry once it is gone`)
      if (!sameSpec(spec, specOf(cr))) throw new AlreadyExistsError(kind, name)
      return fromCr(cr)
    }
    const existing = await this.objects.get(kind, name)
    if (existing !== undefined) return same(existing)
    try {
      return fromCr(await this.objects.create(body))
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err
      return same(await this.mustGetAny(kind, name))
    }
  }

  /**
   * Deletes a block store or policy no volume uses. The in-use finalizer holds it
   * while the last look for users runs after it is marked deleting (see
   * backOutIfReferenceGoes); a delete that finds users then leaves it deleting, and
   * goes through on a later call once they are gone.
   */
  private async deleteUnused(kind: 'BlockStore' | 'StoragePolicy', name: string, field: 'blockStore' | 'storagePolicy'): Promise<void> {
    this.open()
    validateName('name', name)
    await this.retryingConflicts(async () => {
      let cr = await this.objects.get(kind, name)
      if (cr === undefined) return
      if (!isTerminating(cr)) {
        await this.refuseIfUsed(kind, name, field, '')
        await this.objects.delete(kind, name, { uid: cr.metadata.uid, resourceVersion: cr.metadata.resourceVersion })
        cr = await this.objects.get(kind, name)
        if (cr === undefined) return
      }
      await this.refuseIfUsed(kind, name, field, '; it is marked deleting and goes once they are gone')
      await this.dropFinalizer(kind, cr, IN_USE_FINALIZER)
    })
  }

  /** Scans every volume (deleting ones too: their cleanup still needs the block store). */
  private async refuseIfUsed(kind: ResourceKind, name: string, field: 'blockStore' | 'storagePolicy', note: string): Promise<void> {
    const users: string[] = []
    let token: string | undefined
    do {
      const page = await this.objects.list('Volume', { limit: SCAN_PAGE_SIZE, ...(token === undefined ? {} : { continue: token }) })
      for (const v of page.items) if (v.spec?.[field] === name) users.push(v.metadata.name)
      token = page.continue
    } while (token !== undefined && users.length <= IN_USE_NAMES_MAX)
    if (users.length === 0) return
    const shown = users.slice(0, IN_USE_NAMES_MAX).join(', ') + (users.length > IN_USE_NAMES_MAX ? ', …' : '')
    throw new FailedPreconditionError(`${kind} ${name} is used by volumes ${shown}${note}`)
  }

  private async list<T>(
    kind: ResourceKind,
    options: ListOptions | undefined,
    volume: string | undefined,
    fromCr: (cr: CustomResource) => T,
  ): Promise<Page<T>> {
    this.open()
    const limit = resolveLimit(options?.limit)
    const identity = { kind, filter: volume ?? null }
    const token = options?.continue === undefined || options.continue === '' ? undefined : decodeContinueToken(options.continue, identity)
    const page = await this.objects.list(kind, {
      limit,
      ...(token === undefined ? {} : { continue: token }),
      ...(volume === undefined ? {} : { labelSelector: `${SNAPSHOT_VOLUME_LABEL}=${labelValueFor(volume)}` }),
    })
    // Deleting objects are gone for callers; a long name's hashed label is checked against the exact name.
    const items = page.items.filter((cr) => !isTerminating(cr) && (volume === undefined || cr.spec?.volume === volume)).map(fromCr)
    return page.continue === undefined ? { items } : { items, continue: encodeContinueToken(identity, page.continue) }
  }
}

/** Creates a Kubernetes control plane; call `start()` to check the CRDs are installed. */
export function createKubernetesControlPlane(init: KubernetesControlPlaneInit, deps: KubernetesControlPlaneDeps): KubernetesControlPlane {
  return new KubernetesControlPlane(init, deps)
}

/** A KubeConfig from the pod's service account, or from a kubeconfig file when `path` is given. */
export function loadKubeConfig(source: { inCluster: true } | { path: string }): KubeConfig {
  const kc = new KubeConfig()
  if ('path' in source) kc.loadFromFile(source.path)
  else kc.loadFromCluster()
  return kc
}
