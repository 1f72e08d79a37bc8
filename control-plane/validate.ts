/**
 * Input validation and defaulting shared by every ControlPlane implementation, so
 * that Local and Kubernetes refuse exactly the same requests (the CRD schemas in
 * `crds/` mirror these rules for objects written by hand).
 *
 * Each function throws InvalidArgumentError naming the field and the rule.
 */
import { CID } from 'multiformats/cid'
import { InvalidArgumentError } from '../core/errors.js'
import { validateClusterMap as validateCoreClusterMap } from '../core/cluster-map.js'
import {
  LIST_LIMIT_DEFAULT,
  LIST_LIMIT_MAX,
  type AttachmentAccess,
  type AttachmentRelease,
  type BlockStoreInput,
  type BlockStoreSpec,
  type ClusterMap,
  type StoragePolicyInput,
  type StoragePolicySpec,
  type VolumeHead,
  type VolumeHealth,
  type VolumeInput,
  type VolumeSource,
  type VolumeSpec,
  type VolumeStatusPatch,
} from './types.js'

/** The NBD block size; volume sizes are multiples of it so no I/O ever straddles the end. */
export const VOLUME_SIZE_ALIGNMENT_BYTES = 4096
/** Largest volume size: the largest 4096-aligned safe integer. */
export const VOLUME_SIZE_MAX_BYTES = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % 4096)
export const CHUNK_SIZE_MIN_BYTES = 4096
export const CHUNK_SIZE_MAX_BYTES = 4 * 1024 * 1024
/** k + m ceiling: GF(2^8) Reed–Solomon allows 256, but shard fan-out beyond 32 only adds latency. */
export const SHARDS_MAX = 32

export const POLICY_DEFAULTS = {
  chunkSizeBytes: 64 * 1024,
  hash: 'sha2-256',
  failureDomainKey: 'kubernetes.io/hostname',
  scrubIntervalSeconds: 7 * 24 * 3600,
  repairBandwidthBytesPerSecond: 64 * 1024 * 1024,
} as const

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?'
const DNS1123_SUBDOMAIN = new RegExp(`^${DNS1123_LABEL}(\\.${DNS1123_LABEL})*$`)
// Kubernetes label keys: optional DNS-subdomain prefix, then a name of ≤ 63 characters.
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
/** 63 (a Service name) less the `cairn-storage-` prefix the operator gives the storage-node Service. */
const BLOCK_STORE_NAME_MAX = 49
const HEALTHS: readonly VolumeHealth[] = ['unknown', 'healthy', 'degraded', 'failed']

function fail(field: string, rule: string): never {
  throw new InvalidArgumentError(`${field}: ${rule}`)
}

/** A Kubernetes object name: DNS-1123 subdomain, ≤ 253 characters. */
export function validateName(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 253 || !DNS1123_SUBDOMAIN.test(value)) {
    fail(field, `must be a DNS-1123 subdomain (lowercase letters, digits, '-', '.'), got ${JSON.stringify(value)}`)
  }
  return value
}

/**
 * A BlockStore name: it also names the storage-node Service `cairn-storage-<name>`, a
 * DNS-1035 label of at most 63 characters, so at most 49 characters of lower-case letters,
 * digits and '-', starting with a letter (the CRD's CEL rule says the same).
 */
export function validateBlockStoreName(field: string, value: unknown): string {
  const name = validateName(field, value)
  if (name.length > BLOCK_STORE_NAME_MAX || !DNS1035_LABEL.test(name)) {
    fail(field, `a BlockStore name must be at most ${BLOCK_STORE_NAME_MAX} characters of lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (it names the storage-node Service), got ${JSON.stringify(name)}`)
  }
  return name
}

export function validateLabelKey(field: string, value: unknown): string {
  if (typeof value !== 'string') fail(field, 'must be a string')
  const slash = value.lastIndexOf('/')
  const prefix = slash < 0 ? undefined : value.slice(0, slash)
  const name = slash < 0 ? value : value.slice(slash + 1)
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) fail(field, 'bad label prefix')
  if (!LABEL_NAME.test(name)) fail(field, `must be a label key, got ${JSON.stringify(value)}`)
  return value
}

/** An integer in [min, max]. */
export function validateInteger(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(field, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

export function validateVolumeSize(field: string, value: unknown): number {
  const size = validateInteger(field, value, VOLUME_SIZE_ALIGNMENT_BYTES, VOLUME_SIZE_MAX_BYTES)
  if (size % VOLUME_SIZE_ALIGNMENT_BYTES !== 0) fail(field, `must be a multiple of ${VOLUME_SIZE_ALIGNMENT_BYTES}`)
  return size
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function requireRecord(field: string, value: unknown): Record<string, unknown> {
  if (!isRecord(value)) fail(field, 'must be an object')
  return value
}

/** Validates a policy and applies defaults; the result is what gets stored and compared. */
export function resolveStoragePolicy(input: StoragePolicyInput): { name: string; spec: StoragePolicySpec } {
  const raw = requireRecord('storagePolicy', input)
  const name = validateName('name', raw.name)
  const dataShards = validateInteger('dataShards', raw.dataShards, 1, SHARDS_MAX)
  const parityShards = validateInteger('parityShards', raw.parityShards, 0, SHARDS_MAX - 1)
  if (dataShards + parityShards > SHARDS_MAX) fail('dataShards + parityShards', `must be at most ${SHARDS_MAX}`)
  const chunkSizeBytes = validateInteger(
    'chunkSizeBytes',
    raw.chunkSizeBytes ?? POLICY_DEFAULTS.chunkSizeBytes,
    CHUNK_SIZE_MIN_BYTES,
    CHUNK_SIZE_MAX_BYTES,
  )
  if ((chunkSizeBytes & (chunkSizeBytes - 1)) !== 0) fail('chunkSizeBytes', 'must be a power of two')
  const hash = raw.hash ?? POLICY_DEFAULTS.hash
  if (hash !== 'sha2-256' && hash !== 'blake3') fail('hash', "must be 'sha2-256' or 'blake3'")
  const spec: StoragePolicySpec = {
    dataShards,
    parityShards,
    chunkSizeBytes,
    hash,
    failureDomainKey: validateLabelKey('failureDomainKey', raw.failureDomainKey ?? POLICY_DEFAULTS.failureDomainKey),
    journalReplicas: validateInteger('journalReplicas', raw.journalReplicas ?? parityShards + 1, 1, SHARDS_MAX),
    scrubIntervalSeconds: validateInteger(
      'scrubIntervalSeconds',
      raw.scrubIntervalSeconds ?? POLICY_DEFAULTS.scrubIntervalSeconds,
      60,
      365 * 24 * 3600,
    ),
    repairBandwidthBytesPerSecond: validateInteger(
      'repairBandwidthBytesPerSecond',
      raw.repairBandwidthBytesPerSecond ?? POLICY_DEFAULTS.repairBandwidthBytesPerSecond,
      1,
    ),
  }
  return { name, spec }
}

export function resolveBlockStore(input: BlockStoreInput): { name: string; spec: BlockStoreSpec } {
  const raw = requireRecord('blockStore', input)
  // Reads of stored objects come through here too: the stricter rule for new names is the creators' (validateBlockStoreName).
  const name = validateName('name', raw.name)
  if (typeof raw.hostPath !== 'string' || !raw.hostPath.startsWith('/') || raw.hostPath.includes('\0')) {
    fail('hostPath', 'must be an absolute path')
  }
  const selector = requireRecord('nodeSelector', raw.nodeSelector ?? {})
  const nodeSelector: Record<string, string> = {}
  for (const key of Object.keys(selector).sort()) {
    const value = selector[key]
    if (typeof value !== 'string' || value.length > 63) fail(`nodeSelector[${key}]`, 'must be a label value')
    nodeSelector[validateLabelKey(`nodeSelector key`, key)] = value
  }
  const failureDomainKey = validateLabelKey('failureDomainKey', raw.failureDomainKey ?? POLICY_DEFAULTS.failureDomainKey)
  return { name, spec: { hostPath: raw.hostPath, failureDomainKey, nodeSelector } }
}

export function resolveVolume(input: VolumeInput): { name: string; spec: VolumeSpec } {
  const raw = requireRecord('volume', input)
  const name = validateName('name', raw.name)
  const spec: VolumeSpec = {
    blockStore: validateName('blockStore', raw.blockStore),
    storagePolicy: validateName('storagePolicy', raw.storagePolicy),
    sizeBytes: validateVolumeSize('sizeBytes', raw.sizeBytes),
  }
  if (raw.source !== undefined) spec.source = validateSource(raw.source)
  return { name, spec }
}

function validateSource(value: unknown): VolumeSource {
  const source = requireRecord('source', value)
  const keys = Object.keys(source)
  if (keys.length === 1 && keys[0] === 'snapshot') return { snapshot: validateName('source.snapshot', source.snapshot) }
  if (keys.length === 1 && keys[0] === 'volume') return { volume: validateName('source.volume', source.volume) }
  fail('source', 'must be exactly one of {snapshot} or {volume}')
}

/** True when two specs are the same request (idempotent create). */
export function sameSpec(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b)
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    isRecord(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v,
  )
}

export function validateHead(value: unknown): VolumeHead {
  const raw = requireRecord('head', value)
  const rootCid = raw.rootCid
  if (rootCid !== null) {
    if (typeof rootCid !== 'string') fail('head.rootCid', 'must be a CID string or null')
    try {
      if (CID.parse(rootCid).version !== 1) fail('head.rootCid', 'must be a CIDv1')
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err
      throw new InvalidArgumentError(`head.rootCid: not a CID: ${JSON.stringify(rootCid)}`, { cause: err })
    }
  }
  return {
    rootCid,
    sizeBytes: validateVolumeSize('head.sizeBytes', raw.sizeBytes),
    journalSeq: validateInteger('head.journalSeq', raw.journalSeq, 0),
  }
}

export function validateStatusPatch(value: unknown): VolumeStatusPatch {
  const raw = requireRecord('patch', value)
  const patch: VolumeStatusPatch = {}
  for (const key of Object.keys(raw)) {
    if (key !== 'journalReplicas' && key !== 'allocatedBytes' && key !== 'health') {
      fail(`patch.${key}`, 'is not a writable status field')
    }
  }
  if (raw.journalReplicas !== undefined) {
    if (!Array.isArray(raw.journalReplicas) || raw.journalReplicas.length > SHARDS_MAX) {
      fail('patch.journalReplicas', `must be an array of at most ${SHARDS_MAX} node ids`)
    }
    const ids = raw.journalReplicas.map((id, i) => validateName(`patch.journalReplicas[${i}]`, id))
    if (new Set(ids).size !== ids.length) fail('patch.journalReplicas', 'must not repeat a node')
    patch.journalReplicas = ids
  }
  if (raw.allocatedBytes !== undefined) patch.allocatedBytes = validateInteger('patch.allocatedBytes', raw.allocatedBytes, 0)
  if (raw.health !== undefined) {
    if (!HEALTHS.includes(raw.health as VolumeHealth)) fail('patch.health', `must be one of ${HEALTHS.join(', ')}`)
    patch.health = raw.health as VolumeHealth
  }
  return patch
}

/**
 * A cluster map as published through a control plane: the shape of core/cluster-map.ts
 * (one definition for placement, operator and control planes) with an epoch of at least 1,
 * since 0 means nothing was published yet.
 */
export function validateClusterMap(value: unknown): ClusterMap {
  let map: ClusterMap
  try {
    map = validateCoreClusterMap(value)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message, { cause: err })
  }
  if (map.epoch < 1) fail('clusterMap.epoch', 'must be at least 1')
  return map
}

/** The page size to use; absent means the default. */
export function resolveLimit(limit: unknown): number {
  return limit === undefined ? LIST_LIMIT_DEFAULT : validateInteger('limit', limit, 1, LIST_LIMIT_MAX)
}

/** @throws InvalidArgumentError unless `{mode: non-empty name, readOnly: boolean}` */
export function validateAccess(raw: unknown): AttachmentAccess {
  if (typeof raw !== 'object' || raw === null) throw new InvalidArgumentError('access: must be {mode, readOnly}')
  const { mode, readOnly } = raw as Record<string, unknown>
  if (typeof mode !== 'string' || !/^[A-Z][A-Z_]{0,63}$/.test(mode)) throw new InvalidArgumentError('access.mode: must be an access mode name such as SINGLE_NODE_WRITER')
  if (typeof readOnly !== 'boolean') throw new InvalidArgumentError('access.readOnly: must be a boolean')
  return { mode, readOnly }
}

/** A release's report (`AttachmentRelease`); absent is `{}`. */
export function validateRelease(raw: unknown): AttachmentRelease {
  if (raw === undefined) return {}
  if (typeof raw !== 'object' || raw === null) throw new InvalidArgumentError('release: must be {headCurrent?}')
  const { headCurrent } = raw as Record<string, unknown>
  if (headCurrent !== undefined && typeof headCurrent !== 'boolean') throw new InvalidArgumentError('release.headCurrent: must be a boolean')
  return headCurrent === undefined ? {} : { headCurrent }
}
