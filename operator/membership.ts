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
  MESH_PORT,
  PEER_ID_ANNOTATION,
} from './constants.js'
import { tryParseQuantity } from './quantity.js'
import type { BlockStoreSpec, CrdClusterMap, DurabilitySpec, CrdMember, LabelSelector, NodeObject, PodObject } from './types.js'

/** CRD defaults (crds/blockstore.yaml); repeated here because a status write may race the defaulting of an old object. */
export const BLOCKSTORE_DEFAULTS = {
  minDiskBytes: 10 * 2 ** 30,
  minMemoryBytes: 2 ** 30,
  hostPath: '/var/lib/cairn',
  fraction: 0.8,
  failureDomainKey: 'topology.kubernetes.io/zone',
} as const

/** CRD defaults of `spec.durability` (crds/blockstore.yaml). */
export const DURABILITY_DEFAULTS = {
  memberDownTimeoutSeconds: 600,
  scrubBytesPerSecond: 8 * 2 ** 20,
  scrubIntervalSeconds: 86_400,
  repairBandwidthBytesPerSecond: 64 * 2 ** 20,
  repairIntervalSeconds: 60,
  gcIntervalSeconds: 3600,
  gcGracePeriodSeconds: 3600,
} as const

/** The BlockStore's durability settings with the CRD defaults filled in. */
export function durabilityOf(spec: BlockStoreSpec): Required<DurabilitySpec> {
  return { ...DURABILITY_DEFAULTS, ...spec.durability }
}

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
  /** Mesh peer ids the storage nodes reported in Stats, by node name. */
  peerIdByNode?: ReadonlyMap<string, string>
  /** Since when (Unix ms) each member has been seen not ready, by member id (operator/not-ready-tracker.ts). */
  notReadySinceMs?: ReadonlyMap<string, number>
  /** The clock reading the timeout is judged at. @default Date.now() */
  nowMs?: number
  /** How long an Up member may be not ready before it is Down. @default 0 (at once) */
  downTimeoutMs?: number
}

function hostPort(ip: string, port: number): string {
  return `${ip.includes(':') ? `[${ip}]` : ip}:${port}`
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

/** Whether each eligible node serves right now: the node is not NotReady and its storage-node pod is ready with an IP. By node name. */
export function memberReadiness(eligible: readonly NodeObject[], pods: readonly PodObject[]): Map<string, boolean> {
  const podByNode = podsByNode(pods)
  return new Map(eligible.map((node) => {
    const pod = podByNode.get(node.metadata.name)
    return [node.metadata.name, isReady(node.status?.conditions) !== false && pod !== undefined && podIsReady(pod)]
  }))
}

/**
 * The state of a member from its readiness and what was published. A member
 * that never served is Joining (it holds nothing to rebuild). An Up member
 * that stops being ready stays Up for the down timeout, so a pod restart or a
 * rolling update never sends its shards to be rebuilt elsewhere; past the
 * timeout it is Down, and it stays Down until it is ready again.
 */
export function memberState(ready: boolean, before: CrdMember | undefined, notReadySinceMs: number | undefined, nowMs: number, downTimeoutMs: number): CrdMember['state'] {
  if (ready) return 'Up'
  if (before === undefined || before.state === 'Joining') return 'Joining'
  if (before.state === 'Down') return 'Down'
  return nowMs - (notReadySinceMs ?? nowMs) >= downTimeoutMs ? 'Down' : before.state
}

/**
 * One cluster-map member per eligible node, sorted by id; its state from
 * {@link memberState}. Its address is its pod's IP with the gRPC port and its
 * mesh address the same IP with the mesh port; without a pod IP it keeps what
 * it had (or, never having had a pod, the node name and no mesh address),
 * which nobody dials while it does not serve. Peer id: what the node itself
 * reported in Stats, else the `cairn.dev/peer-id` annotation, else the
 * published one (an operator restart forgets reports and must not drop it).
 * Weight: the allocation the node reported, else the published weight, else
 * the estimate from the node's disk.
 */
export function buildMembers(spec: BlockStoreSpec, eligible: readonly NodeObject[], pods: readonly PodObject[], inputs: MemberInputs = {}): CrdMember[] {
  const podByNode = podsByNode(pods)
  const readiness = memberReadiness(eligible, pods)
  const previous = new Map((inputs.previous ?? []).map((m) => [m.id, m]))
  const nowMs = inputs.nowMs ?? Date.now()
  const members = eligible.map((node): CrdMember => {
    const name = node.metadata.name
    const before = previous.get(name)
    const podIp = podByNode.get(name)?.status?.podIP
    const hasIp = podIp !== undefined && podIp !== ''
    const ready = readiness.get(name) === true
    const member: CrdMember = {
      id: name,
      node: name,
      address: hasIp ? hostPort(podIp, GRPC_PORT) : (before?.address ?? `${name}:${GRPC_PORT}`),
      failureDomain: failureDomain(spec, node),
      weightBytes: inputs.capacityByNode?.get(name) ?? before?.weightBytes ?? allocationBytes(spec, nodeDiskBytes(node) ?? 0),
      state: memberState(ready, before, inputs.notReadySinceMs?.get(name), nowMs, inputs.downTimeoutMs ?? 0),
    }
    const meshAddress = hasIp ? hostPort(podIp, MESH_PORT) : before?.meshAddress
    if (meshAddress !== undefined) member.meshAddress = meshAddress
    const annotated = node.metadata.annotations?.[PEER_ID_ANNOTATION]
    const peerId = inputs.peerIdByNode?.get(name) ?? (annotated !== undefined && annotated !== '' ? annotated : before?.peerId)
    if (peerId !== undefined && peerId !== '') member.peerId = peerId
    return member
  })
  return members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** A stable string of a member list: what "the membership changed" compares. */
function membersKey(members: readonly CrdMember[]): string {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return JSON.stringify(sorted.map((m) => [m.id, m.node, m.address, m.peerId ?? null, m.meshAddress ?? null, m.failureDomain, m.weightBytes, m.state]))
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
      ...(m.meshAddress === undefined ? {} : { meshAddress: m.meshAddress }),
      failureDomain: m.failureDomain,
      weight: m.weightBytes / 2 ** 30,
      state: CRD_TO_CORE_STATE[m.state],
    })),
  })
}
