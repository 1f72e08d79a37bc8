/**
 * Conversions between the cairn.dev custom resources (field names from crds/*.yaml)
 * and the domain objects of control-plane/types.ts, at the edge. Reads validate with
 * the same rules as control-plane/validate.ts; any object that breaks them (edited by
 * hand, written by a buggy client) becomes a MalformedObjectError naming the object
 * and the field, never a crash or a half-typed value.
 *
 * Where the CRD and the domain differ, the mapping is:
 * - cluster map member `weight` ↔ `weightBytes` = weight · 2^30 (the operator's unit:
 *   allocated bytes per GiB of weight), rounded to an integer; `node` is written as the
 *   member id; states active/draining/down ↔ Up/Draining/Down, and Joining reads as
 *   down (it holds nothing and must not be placed on yet).
 * - volume health unknown/healthy/degraded/failed ↔ Unknown/Healthy/Degraded/Unavailable;
 *   attachment `nodeId` ↔ `node`; a null root CID or attachment is an absent field.
 * - snapshot `rootCid` ↔ `status.root`; its block store and policy live in annotations,
 *   since the Snapshot CRD has no field for them.
 * - a StoragePolicy's `spec.blockStore` (required by the CRD, absent from the domain)
 *   is written from the ControlPlane's configuration and ignored on read.
 */
import { InvalidArgumentError } from '../../core/errors.js'
import { InvalidClusterMapError, validateClusterMap as validateCoreClusterMap } from '../../core/cluster-map.js'
import type {
  BlockStore,
  BlockStoreSpec,
  ClusterMap,
  ClusterMember,
  MemberState,
  Pin,
  ResourceKind,
  Snapshot,
  StoragePolicy,
  StoragePolicySpec,
  Volume,
  VolumeHead,
  VolumeHealth,
  VolumeSpec,
  VolumeStatus,
} from '../types.js'
import {
  resolveBlockStore,
  resolveStoragePolicy,
  resolveVolume,
  validateAccess,
  validateHead,
  validateInteger,
  validateName,
  validateVolumeSize,
} from '../validate.js'
import {
  API_VERSION,
  INITIAL_HEAD_ANNOTATION,
  IN_USE_FINALIZER,
  SNAPSHOT_BLOCK_STORE_ANNOTATION,
  SNAPSHOT_FINALIZER,
  SNAPSHOT_STORAGE_POLICY_ANNOTATION,
  SNAPSHOT_VOLUME_LABEL,
  VOLUME_FINALIZER,
  labelValueFor,
} from './constants.js'
import { validatePin } from '../pins.js'
import { MalformedObjectError } from './errors.js'
import { isRecord, type CustomResource, type JsonRecord, type NewCustomResource } from './resource.js'

/** Weight unit of the CRD's `weightBytes`: bytes per unit of placement weight. */
export const WEIGHT_UNIT_BYTES = 2 ** 30

const STATE_TO_CR: Readonly<Record<MemberState, string>> = { active: 'Up', draining: 'Draining', down: 'Down' }
const STATE_FROM_CR: Readonly<Record<string, MemberState>> = { Up: 'active', Draining: 'draining', Down: 'down', Joining: 'down' }
const HEALTH_TO_CR: Readonly<Record<VolumeHealth, string>> = {
  unknown: 'Unknown',
  healthy: 'Healthy',
  degraded: 'Degraded',
  failed: 'Unavailable',
}
const HEALTH_FROM_CR: Readonly<Record<string, VolumeHealth>> = {
  Unknown: 'unknown',
  Healthy: 'healthy',
  Degraded: 'degraded',
  Unavailable: 'failed',
}

/** Runs a read conversion, turning any rule it breaks into a MalformedObjectError. */
function reading<T>(kind: ResourceKind, cr: CustomResource, convert: () => T): T {
  try {
    return convert()
  } catch (err) {
    if (err instanceof InvalidArgumentError || err instanceof InvalidClusterMapError) {
      throw new MalformedObjectError(kind, cr.metadata.name, err.message, { cause: err })
    }
    throw err
  }
}

function fail(field: string, rule: string): never {
  throw new InvalidArgumentError(`${field}: ${rule}`)
}

function meta(cr: CustomResource): { name: string; uid: string; revision: string; creationTime: string } {
  const m = cr.metadata
  return { name: m.name, uid: m.uid, revision: m.resourceVersion, creationTime: m.creationTimestamp }
}

function record(field: string, value: unknown): JsonRecord {
  if (value === undefined) return {}
  if (!isRecord(value)) fail(field, 'must be an object')
  return value
}

function newResource(kind: ResourceKind, name: string, spec: JsonRecord, finalizer: string): NewCustomResource {
  return { apiVersion: API_VERSION, kind, metadata: { name, finalizers: [finalizer] }, spec }
}

// ---------------------------------------------------------------- block stores

export function blockStoreToCr(name: string, spec: BlockStoreSpec): NewCustomResource {
  const crSpec: JsonRecord = { hostPath: spec.hostPath, failureDomainKey: spec.failureDomainKey }
  if (Object.keys(spec.nodeSelector).length > 0) crSpec.nodeSelector = { matchLabels: spec.nodeSelector }
  return newResource('BlockStore', name, crSpec, IN_USE_FINALIZER)
}

/** The spec a create compares against; selector expressions (not expressible in the domain) make it differ. */
export function blockStoreSpecOf(cr: CustomResource): JsonRecord {
  return reading('BlockStore', cr, () => {
    const selector = record('spec.nodeSelector', cr.spec?.nodeSelector)
    const resolved = resolveBlockStore({
      name: cr.metadata.name,
      hostPath: cr.spec?.hostPath as string,
      failureDomainKey: cr.spec?.failureDomainKey as string,
      nodeSelector: record('spec.nodeSelector.matchLabels', selector.matchLabels) as Record<string, string>,
    }).spec
    return selector.matchExpressions === undefined ? { ...resolved } : { ...resolved, matchExpressions: selector.matchExpressions }
  })
}

export function blockStoreFromCr(cr: CustomResource): BlockStore {
  const { matchExpressions: _ignored, ...spec } = blockStoreSpecOf(cr)
  const status = { clusterMap: clusterMapFromCr(cr) }
  return { ...meta(cr), ...(spec as unknown as BlockStoreSpec), status }
}

/** `spec.pins` of a BlockStore, ordered by CID; an entry that is not a valid pin makes the object unreadable. */
export function pinsFromCr(cr: CustomResource): Pin[] {
  return reading('BlockStore', cr, () => {
    const raw = cr.spec?.pins ?? []
    if (!Array.isArray(raw)) fail('spec.pins', 'must be an array')
    const pins = raw.map((p: unknown) => validatePin(p))
    return pins.sort((a, b) => (a.cid < b.cid ? -1 : a.cid > b.cid ? 1 : 0))
  })
}

export function clusterMapFromCr(cr: CustomResource): ClusterMap {
  return reading('BlockStore', cr, () => {
    const map = cr.status?.clusterMap
    if (map === undefined) return { epoch: 0, members: [] }
    const raw = record('status.clusterMap', map)
    const members = raw.members ?? []
    if (!Array.isArray(members)) fail('status.clusterMap.members', 'must be an array')
    return validateCoreClusterMap({ epoch: raw.epoch ?? 0, members: members.map(memberFromCr) })
  })
}

function memberFromCr(value: unknown, i: number): unknown {
  const m = record(`status.clusterMap.members[${i}]`, value)
  const weightBytes = m.weightBytes ?? 0
  if (typeof weightBytes !== 'number' || !Number.isSafeInteger(weightBytes)) {
    fail(`status.clusterMap.members[${i}].weightBytes`, 'must be an integer')
  }
  const state = typeof m.state === 'string' ? STATE_FROM_CR[m.state] : undefined
  if (state === undefined) fail(`status.clusterMap.members[${i}].state`, 'must be Joining, Up, Draining or Down')
  const mesh = m.meshAddress === undefined || m.meshAddress === '' ? {} : { meshAddress: m.meshAddress }
  return { id: m.id, address: m.address, peerId: m.peerId, ...mesh, failureDomain: m.failureDomain, weight: weightBytes / WEIGHT_UNIT_BYTES, state }
}

/** The CR form of a validated map, and the map it reads back as (weights are stored in whole bytes). */
export function clusterMapToCr(map: ClusterMap): { cr: JsonRecord; stored: ClusterMap } {
  const members = map.members.map((m: ClusterMember, i) => {
    const weightBytes = Math.round(m.weight * WEIGHT_UNIT_BYTES)
    if (!Number.isSafeInteger(weightBytes)) fail(`clusterMap.members[${i}].weight`, `must be at most ${Number.MAX_SAFE_INTEGER / WEIGHT_UNIT_BYTES}`)
    const mesh = m.meshAddress === undefined ? {} : { meshAddress: m.meshAddress }
    return { id: m.id, node: m.id, address: m.address, peerId: m.peerId, ...mesh, failureDomain: m.failureDomain, weightBytes, state: STATE_TO_CR[m.state] }
  })
  const cr = { epoch: map.epoch, members }
  let stored: ClusterMap
  try {
    stored = validateCoreClusterMap({ epoch: map.epoch, members: members.map(memberFromCr) })
  } catch (err) {
    throw new InvalidArgumentError(`clusterMap: a weight is below the stored precision of 2^-30: ${(err as Error).message}`, { cause: err })
  }
  return { cr, stored }
}

// ---------------------------------------------------------------- storage policies

export function storagePolicyToCr(name: string, spec: StoragePolicySpec, blockStore: string): NewCustomResource {
  return newResource('StoragePolicy', name, { blockStore, ...spec }, IN_USE_FINALIZER)
}

export function storagePolicyFromCr(cr: CustomResource): StoragePolicy {
  return reading('StoragePolicy', cr, () => {
    const s = cr.spec ?? {}
    // The CRD reads 0 as "unlimited", a value the domain validation does not produce.
    const unlimited = s.repairBandwidthBytesPerSecond === 0
    const { spec } = resolveStoragePolicy({
      name: cr.metadata.name,
      dataShards: s.dataShards as number,
      parityShards: s.parityShards as number,
      ...optional('chunkSizeBytes', s.chunkSizeBytes),
      ...optional('hash', s.hash),
      ...optional('failureDomainKey', s.failureDomainKey),
      ...optional('journalReplicas', s.journalReplicas),
      ...optional('scrubIntervalSeconds', s.scrubIntervalSeconds),
      ...optional('repairBandwidthBytesPerSecond', unlimited ? undefined : s.repairBandwidthBytesPerSecond),
    })
    if (unlimited) spec.repairBandwidthBytesPerSecond = 0
    return { ...meta(cr), ...spec }
  })
}

function optional<K extends string>(key: K, value: unknown): Partial<Record<K, never>> {
  return value === undefined ? {} : ({ [key]: value } as Partial<Record<K, never>>)
}

// ---------------------------------------------------------------- volumes

export function volumeToCr(name: string, spec: VolumeSpec, initialHead: VolumeHead): NewCustomResource {
  const cr = newResource('Volume', name, { ...spec } as unknown as JsonRecord, VOLUME_FINALIZER)
  cr.metadata.annotations = { [INITIAL_HEAD_ANNOTATION]: JSON.stringify(initialHead) }
  return cr
}

export function volumeFromCr(cr: CustomResource): Volume {
  return reading('Volume', cr, () => {
    const s = cr.spec ?? {}
    const { spec } = resolveVolume({
      name: cr.metadata.name,
      blockStore: s.blockStore as string,
      storagePolicy: s.storagePolicy as string,
      sizeBytes: s.sizeBytes as number,
      ...(s.source === undefined ? {} : { source: s.source as never }),
    })
    const status = volumeStatusFromCr(cr, spec)
    if (status.head.sizeBytes > spec.sizeBytes) fail('status.head.sizeBytes', `is beyond spec.sizeBytes ${spec.sizeBytes}`)
    return { ...meta(cr), ...spec, status }
  })
}

/** Whether the status was written yet: the API server drops status on create, so it comes second. */
export function hasVolumeStatus(cr: CustomResource): boolean {
  return cr.status?.head !== undefined
}

function volumeStatusFromCr(cr: CustomResource, spec: VolumeSpec): VolumeStatus {
  const st = cr.status ?? {}
  const journalReplicas = st.journalReplicas ?? []
  if (!Array.isArray(journalReplicas)) fail('status.journalReplicas', 'must be an array')
  const readers = st.readers ?? []
  if (!Array.isArray(readers)) fail('status.readers', 'must be an array')
  const recoveryPending = st.recoveryPending ?? false
  if (typeof recoveryPending !== 'boolean') fail('status.recoveryPending', 'must be a boolean')
  const health = HEALTH_FROM_CR[String(st.health ?? 'Unknown')]
  if (health === undefined) fail('status.health', 'must be Healthy, Degraded, Unavailable or Unknown')
  const common = {
    journalReplicas: journalReplicas.map((id, i) => validateName(`status.journalReplicas[${i}]`, id)),
    allocatedBytes: validateInteger('status.allocatedBytes', st.allocatedBytes ?? 0, 0),
    health,
    // Sorted and unique as the transitions keep them, whatever order a hand edit left.
    readers: [...new Set(readers.map((id, i) => validateName(`status.readers[${i}]`, id)))].sort(),
    recoveryPending,
  }
  if (!hasVolumeStatus(cr)) {
    // An epoch without a head means the status was rewritten by hand: refuse rather than restart epochs.
    if (st.epoch !== undefined || st.attachment !== undefined) fail('status.head', 'is missing while status.epoch is set')
    return { head: initialHead(cr, spec), epoch: 0, attachment: null, ...common }
  }
  const h = record('status.head', st.head)
  const head = validateHead({ rootCid: h.rootCid ?? null, sizeBytes: h.sizeBytes, journalSeq: h.journalSeq })
  const epoch = validateInteger('status.epoch', st.epoch, 0)
  return { head, epoch, attachment: attachmentFromCr(st.attachment, epoch), ...common }
}

function initialHead(cr: CustomResource, spec: VolumeSpec): VolumeHead {
  const text = cr.metadata.annotations?.[INITIAL_HEAD_ANNOTATION]
  if (text === undefined) {
    // A Volume made by hand: only an empty one has a head we can know.
    if (spec.source !== undefined) fail(`annotation ${INITIAL_HEAD_ANNOTATION}`, 'is missing on a volume with a source')
    return { rootCid: null, sizeBytes: spec.sizeBytes, journalSeq: 0 }
  }
  return validateHead(parseJson(`annotation ${INITIAL_HEAD_ANNOTATION}`, text))
}

function attachmentFromCr(value: unknown, epoch: number): VolumeStatus['attachment'] {
  if (value === undefined) return null
  const a = record('status.attachment', value)
  const nodeId = validateName('status.attachment.node', a.node)
  const held = validateInteger('status.attachment.epoch', a.epoch, 1)
  if (held !== epoch) fail('status.attachment.epoch', `is ${held}, but the volume's epoch is ${epoch}`)
  if (typeof a.since !== 'string' || Number.isNaN(Date.parse(a.since))) fail('status.attachment.since', 'must be a time')
  if (a.access === undefined) return { nodeId, epoch: held, since: a.since }
  try {
    return { nodeId, epoch: held, since: a.since, access: validateAccess(a.access) }
  } catch (err) {
    return fail('status.attachment.access', (err as Error).message)
  }
}

/** `cr` with its status replaced by `status`, keeping the fields Cairn does not own (conditions, …). */
export function withVolumeStatus(cr: CustomResource, status: VolumeStatus): CustomResource {
  const head: JsonRecord = { sizeBytes: status.head.sizeBytes, journalSeq: status.head.journalSeq }
  if (status.head.rootCid !== null) head.rootCid = status.head.rootCid
  const next: JsonRecord = {
    ...(cr.status ?? {}),
    head,
    epoch: status.epoch,
    journalReplicas: status.journalReplicas,
    allocatedBytes: status.allocatedBytes,
    health: HEALTH_TO_CR[status.health],
    readers: status.readers,
    recoveryPending: status.recoveryPending,
  }
  delete next.attachment
  if (status.attachment !== null) {
    const { nodeId, epoch, since, access } = status.attachment
    next.attachment = { node: nodeId, epoch, since, ...(access === undefined ? {} : { access: { mode: access.mode, readOnly: access.readOnly } }) }
  }
  return { ...cr, status: next }
}

// ---------------------------------------------------------------- snapshots

export function snapshotToCr(snapshot: Snapshot): NewCustomResource {
  const cr = newResource('Snapshot', snapshot.name, { volume: snapshot.volume }, SNAPSHOT_FINALIZER)
  const head = { rootCid: snapshot.status.rootCid, sizeBytes: snapshot.status.sizeBytes, journalSeq: 0 }
  cr.metadata.labels = { [SNAPSHOT_VOLUME_LABEL]: labelValueFor(snapshot.volume) }
  cr.metadata.annotations = {
    [SNAPSHOT_BLOCK_STORE_ANNOTATION]: snapshot.blockStore,
    [SNAPSHOT_STORAGE_POLICY_ANNOTATION]: snapshot.storagePolicy,
    [INITIAL_HEAD_ANNOTATION]: JSON.stringify(head),
  }
  return cr
}

export function hasSnapshotStatus(cr: CustomResource): boolean {
  return cr.status?.readyToUse !== undefined
}

export function snapshotFromCr(cr: CustomResource): Snapshot {
  return reading('Snapshot', cr, () => {
    const annotations = cr.metadata.annotations ?? {}
    const base = {
      ...meta(cr),
      volume: validateName('spec.volume', cr.spec?.volume),
      blockStore: validateName(`annotation ${SNAPSHOT_BLOCK_STORE_ANNOTATION}`, annotations[SNAPSHOT_BLOCK_STORE_ANNOTATION]),
      storagePolicy: validateName(`annotation ${SNAPSHOT_STORAGE_POLICY_ANNOTATION}`, annotations[SNAPSHOT_STORAGE_POLICY_ANNOTATION]),
    }
    if (!hasSnapshotStatus(cr)) {
      const text = annotations[INITIAL_HEAD_ANNOTATION]
      if (text === undefined) fail(`annotation ${INITIAL_HEAD_ANNOTATION}`, 'is missing and the status is empty')
      const head = validateHead(parseJson(`annotation ${INITIAL_HEAD_ANNOTATION}`, text))
      const status = { rootCid: head.rootCid, sizeBytes: head.sizeBytes, readyToUse: false, creationTime: cr.metadata.creationTimestamp }
      return { ...base, status }
    }
    const st = cr.status ?? {}
    const root = validateHead({ rootCid: st.root ?? null, sizeBytes: st.sizeBytes, journalSeq: 0 }).rootCid
    if (typeof st.readyToUse !== 'boolean') fail('status.readyToUse', 'must be a boolean')
    const creationTime = st.creationTime ?? cr.metadata.creationTimestamp
    if (typeof creationTime !== 'string' || Number.isNaN(Date.parse(creationTime))) fail('status.creationTime', 'must be a time')
    const sizeBytes = validateVolumeSize('status.sizeBytes', st.sizeBytes)
    return { ...base, status: { rootCid: root, sizeBytes, readyToUse: st.readyToUse, creationTime } }
  })
}

/** `cr` with the status its annotations describe, marked ready. */
export function withSnapshotReady(cr: CustomResource, snapshot: Snapshot): CustomResource {
  const next: JsonRecord = {
    ...(cr.status ?? {}),
    sizeBytes: snapshot.status.sizeBytes,
    readyToUse: true,
    creationTime: snapshot.status.creationTime,
  }
  if (snapshot.status.rootCid !== null) next.root = snapshot.status.rootCid
  else delete next.root
  return { ...cr, status: next }
}

function parseJson(field: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new InvalidArgumentError(`${field}: not JSON`, { cause: err })
  }
}
