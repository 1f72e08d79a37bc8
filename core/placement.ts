/**
 * Placement: which storage node holds shard i of chunk C, computed from the
 * chunk's CID and the cluster map alone, with no per-chunk location index.
 *
 * Weighted rendezvous hashing (HRW), one slot at a time. Slot i of chunk C
 * scores every member N with weight / -ln(u), u a uniform derived from a
 * 64-bit hash of (C, i, N), and takes the best-scoring member whose failure
 * domain no earlier slot took. Shard i lives on slot i's member.
 *
 * Why per-slot scores and not one ranking cut into positions: with a single
 * ordered list, a member joining at position p shifts every shard after p to
 * the next member (and a member leaving shifts them back), so one membership
 * change would move about (k+m)/2 shards of every affected chunk between
 * members that stayed. Seeding each slot separately (CRUSH's "indep" idea)
 * keeps shard i where it is unless slot i's own winner changes. docs/adr/0004
 * records the decision and the movement it still costs.
 *
 * Properties (tests hold them):
 * - deterministic: same CID bytes and map, same placement, in every process,
 *   architecture and Node version (see placement-hash.ts);
 * - at most one shard of a chunk per failure domain;
 * - each slot's member is drawn with probability proportional to weight among
 *   the domains still free (slot 0: exactly weight / total weight);
 * - `place(C, n)` is a prefix of `place(C, n + 1)` and of `rank(C)`, so
 *   policies with different k+m agree on the shared slots.
 */
import { assert, CairnError, InvalidArgumentError } from './errors.js'
import { validateClusterMap, type ClusterMap, type ClusterMember } from './cluster-map.js'
import { hrwScoreAbove, slotKey, xxh64 } from './placement-hash.js'

/** Fewer failure domains are placeable than the chunk has shards. */
export class InsufficientDomainsError extends CairnError {
  override readonly name = 'InsufficientDomainsError'
  readonly kind = 'failed-precondition'

  constructor(
    readonly shardCount: number,
    readonly domainCount: number,
    readonly epoch: number,
  ) {
    super(`cannot place ${shardCount} shards on distinct failure domains: map epoch ${epoch} has ${domainCount} placeable domains`)
  }
}

/** Per-call placement options. */
export interface PlacementOptions {
  /**
   * Ids of members to leave out, e.g. down or draining members when choosing
   * where a repaired shard goes (see `membersInStates`). Ids not in the map
   * are ignored: the member may have left already.
   * @default no member excluded
   */
  readonly exclude?: ReadonlySet<string>
}

/** Placement over one validated cluster map. Build with {@link createPlacer}. */
export interface Placer {
  /** The epoch of the map this placer was built from. */
  readonly epoch: number
  /** The members placement may choose: the map's members with weight > 0. */
  readonly members: readonly ClusterMember[]
  /**
   * Members for shards 0..shardCount-1 of the chunk: element i holds shard i.
   * @throws InvalidArgumentError for an empty CID or a shard count that is not a positive integer
   * @throws InsufficientDomainsError when fewer placeable domains than shards exist
   */
  place(cidBytes: Uint8Array, shardCount: number, options?: PlacementOptions): ClusterMember[]
  /**
   * The whole domain-distinct ranking: one member per placeable failure
   * domain, slot order. `place(c, n)` is its first n elements; readers and the
   * rebalancer walk further after membership changes.
   */
  rank(cidBytes: Uint8Array, options?: PlacementOptions): ClusterMember[]
}

/**
 * Validates `map` once and precomputes the per-member hashes, for callers
 * that place many chunks against the same map (the flusher, the rebalancer).
 * @throws InvalidClusterMapError when the map is malformed
 */
export function createPlacer(map: ClusterMap): Placer {
  return new HrwPlacer(validateClusterMap(map))
}

// Placers built by the free functions, one per map object. Maps are values
// (never mutated once published), so a cached placer never goes stale.
const cachedPlacers = new WeakMap<ClusterMap, Placer>()

function placerFor(map: ClusterMap): Placer {
  let placer = cachedPlacers.get(map)
  if (placer === undefined) {
    placer = createPlacer(map)
    cachedPlacers.set(map, placer)
  }
  return placer
}

/**
 * Members for shards 0..shardCount-1 of the chunk named by `cidBytes` (the
 * CID's binary form) under `map`; any map, the current one or an older
 * epoch's. Pure: the result depends only on the arguments.
 * @throws InvalidClusterMapError, InvalidArgumentError, InsufficientDomainsError
 */
export function place(cidBytes: Uint8Array, shardCount: number, map: ClusterMap, options?: PlacementOptions): ClusterMember[] {
  return placerFor(map).place(cidBytes, shardCount, options)
}

/**
 * The full domain-distinct HRW ranking of the chunk under `map`.
 * @throws InvalidClusterMapError, InvalidArgumentError
 */
export function rank(cidBytes: Uint8Array, map: ClusterMap, options?: PlacementOptions): ClusterMember[] {
  return placerFor(map).rank(cidBytes, options)
}

/** Where a chunk's shards were placed under one epoch's map. */
export interface EpochPlacement {
  readonly epoch: number
  /** Element i holds shard i. */
  readonly members: readonly ClusterMember[]
}

/**
 * The chunk's placement under each of `maps`, newest epoch first: where a
 * reader looks after the current placement misses (a shard written before a
 * membership change stays where that epoch put it until the rebalancer moves
 * it). An epoch whose map had too few domains for `shardCount` could not have
 * placed such a chunk, so it is left out rather than failing the lookup.
 * @throws InvalidArgumentError when two maps claim the same epoch
 */
export function placementsByEpoch(
  cidBytes: Uint8Array,
  shardCount: number,
  maps: readonly ClusterMap[],
  options?: PlacementOptions,
): EpochPlacement[] {
  const sorted = [...maps].sort((a, b) => b.epoch - a.epoch)
  const result: EpochPlacement[] = []
  for (let i = 0; i < sorted.length; i++) {
    const map = sorted[i] as ClusterMap
    if (i > 0 && (sorted[i - 1] as ClusterMap).epoch === map.epoch) {
      throw new InvalidArgumentError(`two cluster maps claim epoch ${map.epoch}`)
    }
    try {
      result.push({ epoch: map.epoch, members: place(cidBytes, shardCount, map, options) })
    } catch (err) {
      if (!(err instanceof InsufficientDomainsError)) throw err
    }
  }
  return result
}

const NO_EXCLUSIONS: ReadonlySet<string> = new Set()

class HrwPlacer implements Placer {
  readonly epoch: number
  readonly members: readonly ClusterMember[]
  private readonly ids: readonly string[]
  private readonly hashHi: Uint32Array
  private readonly hashLo: Uint32Array
  private readonly weights: Float64Array
  private readonly domainOf: Int32Array
  private readonly domainCount: number
  // Scratch space, reused across calls: placement never yields to the event
  // loop mid-call, so no two calls can interleave on one placer.
  private readonly chunkHash = new Uint32Array(2)
  private readonly key = new Uint32Array(2)
  private readonly excluded: Uint8Array
  private readonly domainTaken: Uint8Array
  private readonly slots: Int32Array

  constructor(map: ClusterMap) {
    this.epoch = map.epoch
    this.members = map.members.filter((m) => m.weight > 0)
    const n = this.members.length
    this.ids = this.members.map((m) => m.id)
    this.hashHi = new Uint32Array(n)
    this.hashLo = new Uint32Array(n)
    this.weights = Float64Array.from(this.members, (m) => m.weight)
    this.domainOf = new Int32Array(n)
    const domains = new Map<string, number>()
    const encoder = new TextEncoder()
    const out = new Uint32Array(2)
    this.members.forEach((m, j) => {
      xxh64(encoder.encode(m.id), 0, 0, out)
      this.hashHi[j] = out[0] as number
      this.hashLo[j] = out[1] as number
      let d = domains.get(m.failureDomain)
      if (d === undefined) domains.set(m.failureDomain, (d = domains.size))
      this.domainOf[j] = d
    })
    this.domainCount = domains.size
    this.excluded = new Uint8Array(n)
    this.domainTaken = new Uint8Array(this.domainCount)
    this.slots = new Int32Array(this.domainCount)
  }

  place(cidBytes: Uint8Array, shardCount: number, options?: PlacementOptions): ClusterMember[] {
    if (!Number.isSafeInteger(shardCount) || shardCount < 1) {
      throw new InvalidArgumentError(`shard count must be a positive integer, got ${shardCount}`)
    }
    const count = this.fill(cidBytes, shardCount, options?.exclude ?? NO_EXCLUSIONS)
    if (count < shardCount) throw new InsufficientDomainsError(shardCount, count, this.epoch)
    return this.collect(count)
  }

  rank(cidBytes: Uint8Array, options?: PlacementOptions): ClusterMember[] {
    return this.collect(this.fill(cidBytes, this.domainCount, options?.exclude ?? NO_EXCLUSIONS))
  }

  private collect(count: number): ClusterMember[] {
    const result = new Array<ClusterMember>(count)
    for (let i = 0; i < count; i++) result[i] = this.members[this.slots[i] as number] as ClusterMember
    return result
  }

  /**
   * Fills `slots[0..]` with member indexes, slot by slot, until `slotsMax`
   * slots are filled or no free domain is left; returns how many were filled.
   */
  private fill(cidBytes: Uint8Array, slotsMax: number, exclude: ReadonlySet<string>): number {
    if (!(cidBytes instanceof Uint8Array) || cidBytes.length === 0) {
      throw new InvalidArgumentError('chunk CID bytes must be a non-empty Uint8Array')
    }
    this.markExcluded(exclude)
    this.domainTaken.fill(0)
    xxh64(cidBytes, 0, 0, this.chunkHash)
    const slotsEnd = Math.min(slotsMax, this.domainCount)
    let slot = 0
    for (; slot < slotsEnd; slot++) {
      const best = this.bestForSlot(slot)
      if (best < 0) break
      this.slots[slot] = best
      this.domainTaken[this.domainOf[best] as number] = 1
    }
    return slot
  }

  private markExcluded(exclude: ReadonlySet<string>): void {
    if (exclude.size === 0) {
      this.excluded.fill(0)
      return
    }
    for (let j = 0; j < this.ids.length; j++) this.excluded[j] = exclude.has(this.ids[j] as string) ? 1 : 0
  }

  /** The highest-scoring member of a free domain for `slot`, or -1 when none is left. */
  private bestForSlot(slot: number): number {
    const key = this.key
    slotKey(this.chunkHash[0] as number, this.chunkHash[1] as number, slot, key)
    const keyHi = key[0] as number
    const keyLo = key[1] as number
    let best = -1
    let bestScore = -1
    for (let j = 0; j < this.weights.length; j++) {
      if (this.excluded[j] === 1 || this.domainTaken[this.domainOf[j] as number] === 1) continue
      const score = hrwScoreAbove(keyHi, keyLo, this.hashHi[j] as number, this.hashLo[j] as number, this.weights[j] as number, bestScore)
      // Equal scores are astronomically rare; the id order still makes them deterministic.
      if (score > bestScore || (score === bestScore && (this.ids[j] as string) < (this.ids[best] as string))) {
        best = j
        bestScore = score
      }
    }
    assert(best < 0 || bestScore > 0, 'HRW scores are positive')
    return best
  }
}
