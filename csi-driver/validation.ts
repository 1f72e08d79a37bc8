/**
 * Request validation shared by the controller (and usable by the node service):
 * CSI names → control-plane ids, capacity ranges → sizes, volume capabilities →
 * accept or refuse. Each function throws the error whose kind the CSI spec
 * mandates; none of them touches state.
 */
import { createHash } from 'node:crypto'
import { InvalidArgumentError } from '../core/errors.js'
import { VOLUME_SIZE_ALIGNMENT_BYTES, VOLUME_SIZE_MAX_BYTES, validateName } from '../control-plane/validate.js'
import { CapacityOutOfRangeError } from './errors.js'
import type { AccessMode, CapacityRange, VolumeCapability } from './types.js'

/** CSI names longer than this are refused (the CSI spec's 128-byte limit on identifiers). */
export const CSI_NAME_MAX_BYTES = 128

/** Filesystems the node service can make and grow. '' means the default. */
export const SUPPORTED_FS_TYPES: ReadonlySet<string> = new Set(['', 'ext4', 'xfs'])

/** Access modes any volume supports. */
const WRITER_MODES: ReadonlySet<AccessMode> = new Set(['SINGLE_NODE_WRITER', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER'])

/** Banned in CSI names by the spec: control characters other than common whitespace. */
// eslint-disable-next-line no-control-regex
const BANNED_NAME_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/

/** Whether `id` can name a control-plane object at all (a DNS-1123 subdomain). */
export function isObjectName(id: string): boolean {
  try {
    validateName('id', id)
    return true
  } catch {
    return false
  }
}

/**
 * The control-plane name (and CSI id) for a CSI `name`. A name that is already a DNS-1123
 * subdomain (Kubernetes' `pvc-<uid>`, `snapshot-<uid>`) is used as is, so ids read well in
 * `kubectl get volumes`; anything else maps to `<prefix>-<sha256 prefix>`, which is stable,
 * so retries with the same name find the same object.
 */
export function objectNameFor(field: string, name: string, prefix: 'vol' | 'snap'): string {
  if (name === '') throw new InvalidArgumentError(`${field} is required`)
  if (Buffer.byteLength(name) > CSI_NAME_MAX_BYTES) throw new InvalidArgumentError(`${field} is longer than ${CSI_NAME_MAX_BYTES} bytes`)
  if (BANNED_NAME_CHARS.test(name)) throw new InvalidArgumentError(`${field} contains a control character the CSI spec bans`)
  if (isObjectName(name)) return name
  return `${prefix}-${createHash('sha256').update(name).digest('hex').slice(0, 40)}`
}

/**
 * The size to provision for `range`: `required` rounded up to 4096 bytes, or the largest
 * multiple of 4096 within `limit` when only a limit is given, or `fallbackBytes`.
 * @throws InvalidArgumentError for negative bounds; CapacityOutOfRangeError when no aligned size fits.
 */
export function sizeForRange(range: CapacityRange | undefined, fallbackBytes: number): number {
  const required = range?.requiredBytes ?? 0
  const limit = range?.limitBytes ?? 0
  if (required < 0 || limit < 0) throw new InvalidArgumentError('capacity_range bounds must not be negative')
  if (limit !== 0 && required > limit) throw new InvalidArgumentError(`capacity_range.required_bytes ${required} exceeds limit_bytes ${limit}`)
  let size: number
  if (required !== 0) size = Math.ceil(required / VOLUME_SIZE_ALIGNMENT_BYTES) * VOLUME_SIZE_ALIGNMENT_BYTES
  else if (limit !== 0) size = Math.min(fallbackBytes, Math.floor(limit / VOLUME_SIZE_ALIGNMENT_BYTES) * VOLUME_SIZE_ALIGNMENT_BYTES)
  else size = fallbackBytes
  if (size < VOLUME_SIZE_ALIGNMENT_BYTES || size > VOLUME_SIZE_MAX_BYTES) {
    throw new CapacityOutOfRangeError(`no size from ${VOLUME_SIZE_ALIGNMENT_BYTES} to ${VOLUME_SIZE_MAX_BYTES} in steps of 4096 fits capacity_range [${required}, ${limit || '∞'}]`)
  }
  if (limit !== 0 && size > limit) throw new CapacityOutOfRangeError(`required_bytes ${required} rounded up to 4096 (${size}) exceeds limit_bytes ${limit}`)
  return size
}

/** Whether an existing size satisfies `range` (0 bounds are absent). */
export function sizeFits(sizeBytes: number, range: CapacityRange | undefined): boolean {
  const required = range?.requiredBytes ?? 0
  const limit = range?.limitBytes ?? 0
  return sizeBytes >= required && (limit === 0 || sizeBytes <= limit)
}

/** Why `cap` is not supported for a volume (`fromSnapshot`: restored from a snapshot), or undefined when it is. */
export function capabilityProblem(cap: VolumeCapability, fromSnapshot: boolean): string | undefined {
  if (cap.accessType === undefined) return 'volume_capability must set block or mount'
  if (cap.accessType.kind === 'mount' && !SUPPORTED_FS_TYPES.has(cap.accessType.fsType)) {
    return `fs_type ${JSON.stringify(cap.accessType.fsType)} is not supported (ext4 or xfs)`
  }
  if (WRITER_MODES.has(cap.accessMode)) return undefined
  if (cap.accessMode === 'MULTI_NODE_READER_ONLY') return fromSnapshot ? undefined : 'MULTI_NODE_READER_ONLY is only supported for volumes created from a snapshot'
  if (cap.accessMode === 'UNKNOWN') return 'access_mode is required'
  return `access mode ${cap.accessMode} is not supported`
}

/** @throws InvalidArgumentError when `caps` is empty or any capability is unsupported. */
export function requireCapabilities(field: string, caps: VolumeCapability[], fromSnapshot: boolean): void {
  if (caps.length === 0) throw new InvalidArgumentError(`${field} is required`)
  for (const cap of caps) {
    const problem = capabilityProblem(cap, fromSnapshot)
    if (problem !== undefined) throw new InvalidArgumentError(`${field}: ${problem}`)
  }
}

/** Whether a mode lets only one node use the volume at a time. */
export function isSingleNodeMode(mode: AccessMode): boolean {
  return WRITER_MODES.has(mode) || mode === 'SINGLE_NODE_READER_ONLY'
}

/**
 * Parameters a CO adds on its own (external-provisioner's --extra-create-metadata):
 * accepted and ignored, unlike unknown keys, which are refused so a typo is not silent.
 */
export function isCoParameter(key: string): boolean {
  return key.startsWith('csi.storage.k8s.io/')
}
