/**
 * The cluster map: which storage nodes exist, where they are, which failure
 * domain each one lives in and how much data each should hold.
 *
 * The operator publishes it (BlockStore status, or the Local control plane's
 * table); the engine, the storage nodes, the repairer and the rebalancer all
 * compute placement from it. It is plain JSON data on purpose: it crosses the
 * Kubernetes API, SQLite and the wire unchanged, and every consumer validates
 * it with {@link validateClusterMap} at the edge before trusting it.
 *
 * A map is a value: it is never mutated after it is published. Any change
 * (a member joins, leaves, changes state, weight or address) is a new map with
 * a higher `epoch`, so "the map at epoch E" names one exact placement, which
 * is what readers fall back to after membership changes.
 */
import { CairnError } from './errors.js'

/**
 * A member's lifecycle state. Placement never reads it by itself: callers
 * turn states into an explicit exclusion set (see {@link membersInStates}),
 * because a writer, a repairer and a reader want different things from a
 * down member.
 *
 * - `active`: holds data and takes new shards.
 * - `draining`: being removed; still serves reads, should take no new shards.
 * - `down`: not reachable (per the operator); its shards need repair elsewhere.
 */
export type MemberState = 'active' | 'draining' | 'down'

/** Every member state, in a stable order. */
export const MEMBER_STATES: readonly MemberState[] = ['active', 'draining', 'down']

/** One storage node in the cluster map. */
export interface ClusterMember {
  /**
   * Stable identity, unique in the map (the storage node's name; it survives
   * restarts and address changes). Placement hashes it: renaming a member
   * moves all of its data.
   */
  readonly id: string
  /** Where its gRPC services listen, `host:port`. */
  readonly address: string
  /** Its libp2p peer id; the mesh refuses peers that are not in the map. */
  readonly peerId: string
  /**
   * Where its libp2p mesh listens, `host:port` (TCP). Absent for a member that
   * runs no mesh (an older node, or a map published before the node reported it):
   * peers cannot reach it for repair or rebalance transfers.
   */
  readonly meshAddress?: string
  /**
   * The failure domain (the value of the BlockStore's failure-domain label,
   * e.g. a zone or a node name). Placement puts at most one shard of a chunk
   * in each domain.
   */
  readonly failureDomain: string
  /**
   * Relative share of data this member should hold, derived from its capacity
   * allocation (the operator uses allocated bytes / 2^30). Finite and > 0 for
   * active members; a non-active member may carry 0. Members with weight 0
   * are never chosen.
   */
  readonly weight: number
  readonly state: MemberState
}

/** The cluster map at one epoch. */
export interface ClusterMap {
  /** Non-negative integer; strictly increases on every change to the map. */
  readonly epoch: number
  /** Members in any order; placement does not depend on the order. */
  readonly members: readonly ClusterMember[]
}

/**
 * Where the cluster maps come from (the control plane, re-read on an interval,
 * or a fixed map in tests). Engines, repairers and rebalancers read placement
 * through it; none of them fetches maps by itself.
 */
export interface ClusterMapProvider {
  /** The newest map. */
  current(): ClusterMap
  /** Earlier maps, any order: where readers look after the current placement misses. @default none */
  history?(): readonly ClusterMap[]
}

/** Why a cluster map failed validation. */
export type ClusterMapIssueReason =
  | 'not-an-object'
  | 'bad-epoch'
  | 'bad-members'
  | 'bad-string'
  | 'bad-address'
  | 'duplicate-id'
  | 'duplicate-peer-id'
  | 'bad-weight'
  | 'bad-state'

/** One problem found in a cluster map. */
export interface ClusterMapIssue {
  /** Where, as a JSON path: `members[3].weight`. */
  readonly path: string
  readonly reason: ClusterMapIssueReason
  readonly message: string
}

/** A cluster map failed validation; `issues` lists every problem found. */
export class InvalidClusterMapError extends CairnError {
  override readonly name = 'InvalidClusterMapError'
  readonly kind = 'invalid-argument'
  readonly issues: readonly ClusterMapIssue[]

  constructor(issues: readonly ClusterMapIssue[]) {
    super(`invalid cluster map: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`)
    this.issues = issues
  }
}

/** `host:port` with a port of 1..65535; IPv6 hosts in brackets. */
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])$/

/** Longest accepted id, address, peer id or failure domain (a DNS name's limit). */
export const CLUSTER_MAP_STRING_LENGTH_MAX = 253

/**
 * Checks that `value` is a well-formed cluster map and returns a copy with
 * exactly the documented fields (unknown fields from newer publishers are
 * dropped, so nothing unvalidated flows further).
 *
 * @throws InvalidClusterMapError listing every problem found
 */
export function validateClusterMap(value: unknown): ClusterMap {
  const issues: ClusterMapIssue[] = []
  if (!isRecord(value)) {
    throw new InvalidClusterMapError([{ path: '$', reason: 'not-an-object', message: 'expected an object' }])
  }
  const { epoch, members } = value
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) {
    issues.push({ path: 'epoch', reason: 'bad-epoch', message: `expected a non-negative integer, got ${describe(epoch)}` })
  }
  if (!Array.isArray(members)) {
    issues.push({ path: 'members', reason: 'bad-members', message: `expected an array, got ${describe(members)}` })
    throw new InvalidClusterMapError(issues)
  }
  const copies = members.map((m: unknown, i) => validateMember(m, `members[${i}]`, issues))
  checkUnique(copies, 'id', 'duplicate-id', issues)
  checkUnique(copies, 'peerId', 'duplicate-peer-id', issues)
  if (issues.length > 0) throw new InvalidClusterMapError(issues)
  return { epoch: epoch as number, members: copies as ClusterMember[] }
}

function validateMember(value: unknown, path: string, issues: ClusterMapIssue[]): Partial<ClusterMember> {
  if (!isRecord(value)) {
    issues.push({ path, reason: 'not-an-object', message: 'expected an object' })
    return {}
  }
  const strings = ['id', 'address', 'peerId', 'failureDomain'] as const
  for (const key of strings) {
    const s = value[key]
    if (typeof s !== 'string' || s.length === 0 || s.length > CLUSTER_MAP_STRING_LENGTH_MAX) {
      issues.push({
        path: `${path}.${key}`,
        reason: 'bad-string',
        message: `expected a string of 1..${CLUSTER_MAP_STRING_LENGTH_MAX} characters, got ${describe(s)}`,
      })
    }
  }
  if (typeof value.address === 'string' && !HOST_PORT.test(value.address)) {
    issues.push({ path: `${path}.address`, reason: 'bad-address', message: `expected host:port, got ${describe(value.address)}` })
  }
  const { meshAddress } = value
  if (meshAddress !== undefined && (typeof meshAddress !== 'string' || !HOST_PORT.test(meshAddress))) {
    issues.push({ path: `${path}.meshAddress`, reason: 'bad-address', message: `expected host:port or no field, got ${describe(meshAddress)}` })
  }
  const { state, weight } = value
  if (typeof state !== 'string' || !(MEMBER_STATES as readonly string[]).includes(state)) {
    issues.push({ path: `${path}.state`, reason: 'bad-state', message: `expected one of ${MEMBER_STATES.join(', ')}, got ${describe(state)}` })
  }
  // Active members must be placeable; others may be weighted out with 0.
  const weightMin = state === 'active' ? 'greater than 0' : 'at least 0'
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || (state === 'active' && weight === 0)) {
    issues.push({ path: `${path}.weight`, reason: 'bad-weight', message: `expected a finite number ${weightMin}, got ${describe(weight)}` })
  }
  return {
    id: value.id as string,
    address: value.address as string,
    peerId: value.peerId as string,
    ...(typeof meshAddress === 'string' ? { meshAddress } : {}),
    failureDomain: value.failureDomain as string,
    weight: weight as number,
    state: state as MemberState,
  }
}

function checkUnique(
  members: readonly Partial<ClusterMember>[],
  key: 'id' | 'peerId',
  reason: ClusterMapIssueReason,
  issues: ClusterMapIssue[],
): void {
  const seen = new Map<string, number>()
  members.forEach((m, i) => {
    const v = m[key]
    if (typeof v !== 'string') return
    const first = seen.get(v)
    if (first === undefined) seen.set(v, i)
    else issues.push({ path: `members[${i}].${key}`, reason, message: `${JSON.stringify(v)} already used by members[${first}]` })
  })
}

/**
 * The ids of members in any of `states`: the usual way to build a placement
 * exclusion set, e.g. `membersInStates(map, ['down', 'draining'])` for where a
 * repaired or newly written shard should go.
 */
export function membersInStates(map: ClusterMap, states: readonly MemberState[]): Set<string> {
  return new Set(map.members.filter((m) => states.includes(m.state)).map((m) => m.id))
}

const placementViews = new WeakMap<ClusterMap, ClusterMap>()

/**
 * The map as placement sees it: only `active` members take shards. Writers place
 * new shards over it, readers look there first, and repair and rebalance move
 * shards to it, so all three agree: a `down` member's shards are rebuilt elsewhere
 * and a `draining` member's are moved off, while both keep serving reads through
 * the fallbacks (earlier epochs, then every member). The same object comes back
 * for the same map (placement caches its work per map object).
 */
export function placementView(map: ClusterMap): ClusterMap {
  if (map.members.every((m) => m.state === 'active')) return map
  let view = placementViews.get(map)
  if (view === undefined) {
    view = { epoch: map.epoch, members: map.members.filter((m) => m.state === 'active') }
    placementViews.set(map, view)
  }
  return view
}

/** A provider whose maps (current and earlier) are {@link placementView}s of `maps`'. */
export function placementMaps(maps: ClusterMapProvider): ClusterMapProvider {
  const history = maps.history
  return {
    current: () => placementView(maps.current()),
    ...(history === undefined ? {} : { history: () => history.call(maps).map(placementView) }),
  }
}

/**
 * The number of distinct failure domains that hold at least one placeable
 * member (weight > 0, not excluded): the most shards one chunk can spread over.
 */
export function placeableDomainCount(map: ClusterMap, exclude: ReadonlySet<string> = new Set()): number {
  const domains = new Set<string>()
  for (const m of map.members) if (m.weight > 0 && !exclude.has(m.id)) domains.add(m.failureDomain)
  return domains.size
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'number') return String(value)
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value
}
