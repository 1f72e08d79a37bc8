/**
 * Names the Kubernetes ControlPlane writes on the cairn.dev objects: API group,
 * plurals, finalizers, labels and annotations. The operator reconciles the same
 * objects and must agree on every one of them, so they live in one module
 * (operator/constants.ts carries the same finalizer values).
 */
import { createHash } from 'node:crypto'
import type { ResourceKind } from '../types.js'

export const GROUP = 'cairn.dev'
export const VERSION = 'v1alpha1'
export const API_VERSION = `${GROUP}/${VERSION}`

/** Plural resource names of the Cairn CRDs. */
export const PLURAL: Readonly<Record<ResourceKind, string>> = {
  BlockStore: 'blockstores',
  StoragePolicy: 'storagepolicies',
  Volume: 'volumes',
  Snapshot: 'snapshots',
}

// ---------------------------------------------------------------- finalizers

/**
 * On a Volume: its journal on the storage nodes in `status.journalReplicas` must be
 * dropped before the object goes. The ControlPlane's delete removes it itself when
 * the volume has no journal replicas (nothing to clean); otherwise the operator does,
 * after the cleanup.
 */
export const VOLUME_FINALIZER = 'cairn.dev/volume-cleanup'
/**
 * On a Snapshot: lets the operator see a `kubectl delete`. A snapshot holds nothing
 * but a garbage-collection root, so the ControlPlane's delete always removes it.
 */
export const SNAPSHOT_FINALIZER = 'cairn.dev/snapshot-cleanup'
/**
 * On a BlockStore and a StoragePolicy: deletion waits until no Volume uses the object.
 * It closes the window between "no volume uses it" and the delete: a deleter marks
 * the object deleting before its last check, and a volume creator re-reads the object
 * after creating the volume and backs out if it is being deleted.
 */
export const IN_USE_FINALIZER = 'cairn.dev/in-use-protection'

// ---------------------------------------------------------------- labels and annotations

/** On a Snapshot: the volume it was taken of (see {@link labelValueFor}), for filtered lists. */
export const SNAPSHOT_VOLUME_LABEL = 'cairn.dev/volume'
/** On a Snapshot: the block store of its volume (exact name; snapshots outlive volumes). */
export const SNAPSHOT_BLOCK_STORE_ANNOTATION = 'cairn.dev/block-store'
/** On a Snapshot: the storage policy of its volume (exact name). */
export const SNAPSHOT_STORAGE_POLICY_ANNOTATION = 'cairn.dev/storage-policy'
/**
 * On a Volume and a Snapshot: the head it starts at, as JSON, written atomically with
 * the object. The API server ignores status on create, so status is written by a
 * second request; until it is, readers take the head from here.
 */
export const INITIAL_HEAD_ANNOTATION = 'cairn.dev/initial-head'

/** Longest label value Kubernetes accepts. */
const LABEL_VALUE_LENGTH_MAX = 63

/**
 * A label value standing for an object name. Names of up to 63 characters are used
 * as they are (a DNS-1123 subdomain is a valid label value); longer names become
 * `sha256-` and 56 hex digits of their hash. Readers still compare the exact name,
 * so a hash collision could only shorten a filtered page, never add to it.
 */
export function labelValueFor(name: string): string {
  if (name.length <= LABEL_VALUE_LENGTH_MAX) return name
  return `sha256-${createHash('sha256').update(name).digest('hex').slice(0, 56)}`
}

// ---------------------------------------------------------------- credentials

/**
 * The Secret (in the operator's namespace, key `token`) holding a block store's
 * cluster token: the operator creates it (operator/constants.ts `ownedNames`), storage
 * nodes require it, and engines in a cluster send it.
 */
export function clusterTokenSecretName(blockStore: string): string {
  return `cairn-storage-${blockStore}-token`
}
