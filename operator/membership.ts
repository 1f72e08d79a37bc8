/**
 * Pure functions of (BlockStore spec, nodes, pods) → which nodes are eligible,
 * what each may store, and the cluster map to publish. No I/O: the BlockStore
 * reconciler feeds them from its caches, and the unit tests feed them tables.
 */
import { validateClusterMap, type ClusterMap, type MemberState } from '../core/cluster-map.js'
import {
  DISK_BYTES_LABEL,
  GRPC_PORT,
  HOSTNAME_LABEL,
  PEER_ID_ANNOTATION,
} from './constants.js'
import { tryParseQuantity } from './quantity.js'
import type { BlockStoreSpec, CrdClusterMap, CrdMember, LabelSelector, NodeObject, PodObject } from './types.js'

/** CRD defaults (crds/blockstore.yaml); repeated here because a status write may race the defaulting of an old object. */
export const BLOCKSTORE_DEFAULTS = {
  minDiskBytes: 10 * 2 ** 30,
  minMemoryBytes: 2 ** 30,
  hostPath: '/var/lib/cairn',
  fraction: 0.8,
  failureDomainKey: 'topology.kubernetes.io/zone',
} as const

/** Whether `labels` match a Kubernetes label selector; an empty selector matches everything. */
export function matchesSelector(selector: LabelSelector | undefined, labels: Record<string, string> = {}): boolean {
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) if (labels[key] !== value) return false
  for (const expr of selector?.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, expr.key)
    const value = labels[expr.key]
    const values = expr.values ?? []
    const ok =
      expr.operator === 'In' ? has && values.includes(value as string)
      : expr.operator === 'NotIn' ? !has || !values.includes(value as string)
      : expr.operator === 'Exists' ? has
      : !has
    if (!ok) return false
  }
  return true
}

/** A node's disk: the `cairn.dev/disk-bytes` label when present and valid, else capacity `ephemeral-storage`. */
export function nodeDiskBytes(node: NodeObject): number | undefined {
  const label = node.metadata.labels?.[DISK_BYTES_LABEL]
  return tryParseQuantity(label) ?? tryParseQuantity(node.status?.capacity?.['ephemeral-storage'])
}

/** A node's memory: allocatable `memory`, else capacity `memory`. */
export function nodeMemoryBytes(node: NodeObject): number | undefined {
  return tryParseQuantity(node.status?.allocatable?.memory) ?? tryParseQuantity(node.status?.capacity?.memory)
}

/** Why a node is or is not eligible; `eligible` is the verdict. */
export interface Eligibility {
  eligible: boolean
  reason: 'eligible' | 'selector' | 'disk-unknown' | 'disk-too-small' | 'memory-unknown' | 'memory-too-small'
}

/** Node eligibility = nodeSelector match AND disk ≥ minDiskBytes AND memory ≥ minMemoryBytes. A node whose disk or memory cannot be read is not eligible. */
export function nodeEligibility(spec: BlockStoreSpec, node: NodeObject): Eligibility {
  if (!matchesSelector(spec.nodeSelector, node.metadata.labels)) return { eligible: false, reason: 'selector' }
  const disk = nodeDiskBytes(node)
  if (disk === undefined) return { eligible: false, reason: 'disk-unknown' }
  if (disk < (spec.eligibility?.minDiskBytes ?? BLOCKSTORE_DEFAULTS.minDiskBytes)) return { eligible: false, reason: 'disk-too-small' }
  const memory = nodeMemoryBytes(node)
  if (memory === undefined) return { eligible: false, reason: 'memory-unknown' }
  if (memory < (spec.eligibility?.minMemoryBytes ?? BLOCKSTORE_DEFAULTS.minMemoryBytes)) return { eligible: false, reason: 'memory-too-small' }
  return { eligible: true, reason: 'eligible' }
}

/**
 * Bytes Cairn may use on a disk of `diskBytes`: fraction × disk, clamped to
 * [minBytes, maxBytes], and never more than the disk itself (a minBytes larger
 * than the disk cannot be honoured, and promising it would overweight the node).
 * The storage node computes the same from its own statfs at start; the operator
 * uses this to weight members before they report.
 */
export function allocationBytes(spec: BlockStoreSpec, diskBytes: number): number {
  const fraction = spec.capacity?.fraction ?? BLOCKSTORE_DEFAULTS.fraction
  let bytes = Math.floor(diskBytes * fraction)
  if (spec.capacity?.minBytes !== undefined) bytes = Math.max(bytes, spec.capacity.minBytes)
  if (spec.capacity?.maxBytes !== undefined) bytes = Math.min(bytes, spec.capacity.maxBytes)
  return Math.max(0, Math.min(bytes, diskBytes))
}

/** The failure domain of a node: its failureDomainKey label, else its hostname label, else its name. */
export function failureDomain(spec: BlockStoreSpec, node: NodeObject): string {
  const labels = node.metadata.labels ?? {}
  return labels[spec.failureDomainKey ?? BLOCKSTORE_DEFAULTS.failureDomainKey] ?? labels[HOSTNAME_LABEL] ?? node.metadata.name
}

function isReady(conditions: { type: string; status: string }[] | undefined): boolean | undefined {
  const ready = conditions?.find((c) => c.type === 'Ready')
  return ready === undefined ? undefined : ready.status === 'True'
}

/** Whether a pod reports Ready=True and has an IP to be reached at. */
export function podIsReady(pod: PodObject): boolean {
  const ip = pod.status?.podIP
  return isReady(pod.status?.conditions) === true && ip !== undefined && ip !== '' && pod.metadata.deletionTimestamp === undefined
}

/** What members are built from besides the nodes and pods. */
export interface MemberInputs {
  /** The members published so far: a member keeps its weight until its node reports, and its last address while it has no pod IP. */
  previous?: readonly CrdMember[]
  /** Allocations the storage nodes reported, by node name (operator/usage-poller.ts). */
  capacityByNode?: ReadonlyMap<string, number>
}

function hostPort(ip: string): string {
  return `${ip.includes(':') ? `[${ip}]` : ip}:${GRPC_PORT}`
}

/** The storage-node pod of each node: a ready one when there are several (a rollout), else any not being deleted. */
function podsByNode(pods: readonly PodObject[]): Map<string, PodObject> {
  const byNode = new Map<string, PodObject>()
  for (const pod of pods) {
    const node = pod.spec?.nodeName
    if (node === undefined || pod.metadata.deletionTimestamp !== undefined) continue
    const seen = byNode.get(node)
    if (seen === undefined || (!podIsReady(seen) && podIsReady(pod))) byNode.set(node, pod)
  }
  return byNode
}

/**
 * One cluster-map member per eligible node, sorted by id. A member is Up only
 * when its node is not NotReady and its storage-node pod is ready with an IP;
 * its address is then that pod's IP and the gRPC port. Otherwise it is Down and
 * keeps the address it had (or, never having had a pod, the node name), which
 * nobody dials while it is Down. Weight: the allocation the node reported, else
 * the published weight (so an operator restart, which forgets reports, does not
 * move the epoch), else the estimate from the node's disk.
 */
export function buildMembers(spec: BlockStoreSpec, eligible: readonly NodeObject[], pods: readonly PodObject[], inputs: MemberInputs = {}): CrdMember[] {
  const podByNode = podsByNode(pods)
  const previous = new Map((inputs.previous ?? []).map((m) => [m.id, m]))
  const members = eligible.map((node): CrdMember => {
    const name = node.metadata.name
    const pod = podByNode.get(name)
    const before = previous.get(name)
    const podIp = pod?.status?.podIP
    const up = isReady(node.status?.conditions) !== false && pod !== undefined && podIsReady(pod)
    const member: CrdMember = {
      id: name,
      node: name,
      address: podIp !== undefined && podIp !== '' ? hostPort(podIp) : (before?.address ?? `${name}:${GRPC_PORT}`),
      failureDomain: failureDomain(spec, node),
      weightBytes: inputs.capacityByNode?.get(name) ?? before?.weightBytes ?? allocationBytes(spec, nodeDiskBytes(node) ?? 0),
      state: up ? 'Up' : 'Down',
    }
    const peerId = node.metadata.annotations?.[PEER_ID_ANNOTATION]
    if (peerId !== undefined && peerId !== '') member.peerId = peerId
    return member
  })
  return members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** A stable string of a member list: what "the membership changed" compares. */
function membersKey(members: readonly CrdMember[]): string {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return JSON.stringify(sorted.map((m) => [m.id, m.node, m.address, m.peerId ?? null, m.failureDomain, m.weightBytes, m.state]))
}

/**
 * The map to publish: the current one unchanged when its members are the same,
 * else the new members at epoch + 1. The epoch therefore moves exactly when
 * membership (any member field) changes and never otherwise, which is what
 * lets readers name a placement by its epoch.
 */
export function nextClusterMap(current: CrdClusterMap | undefined, members: CrdMember[]): CrdClusterMap {
  const epoch = current?.epoch ?? 0
  if (current !== undefined && membersKey(current.members ?? []) === membersKey(members)) return current
  if (current === undefined && members.length === 0) return { epoch: 0, members: [] }
  return { epoch: epoch + 1, members }
}

const CRD_TO_CORE_STATE: Record<CrdMember['state'], MemberState> = { Joining: 'down', Up: 'active', Draining: 'draining', Down: 'down' }

/**
 * The core cluster map (core/cluster-map.ts) of a published CRD map: weight in
 * GiB of allocation, CRD states mapped to core states (Joining counts as down:
 * it serves nothing yet). Validated, so a member without a peer id yet makes
 * the map unusable for the mesh, which pins peer ids, and says so.
 * @throws InvalidClusterMapError when the published map is not a valid core map
 */
export function toCoreClusterMap(map: CrdClusterMap): ClusterMap {
  return validateClusterMap({
    epoch: map.epoch,
    members: map.members.map((m) => ({
      id: m.id,
      address: m.address,
      peerId: m.peerId ?? '',
      failureDomain: m.failureDomain,
      weight: m.weightBytes / 2 ** 30,
      state: CRD_TO_CORE_STATE[m.state],
    })),
  })
}
