/**
 * The read path below the cache: finds enough good shards of each chunk,
 * rebuilds and verifies it, and reports every shard that could not be used.
 *
 * Rounds, each one request per node (split only at the node's batch limits)
 * for every chunk that still needs shards, all nodes in parallel:
 * 1. the k data shards at the current placement (the common case ends here);
 * 2. the parity shards at the current placement, for chunks missing a data shard;
 * 3. the shards at older epochs' placements (before a membership change);
 * 4. HasShards to every member, then the shards from members that have them.
 * Every rebuilt chunk is checked against its CID in the codec pool before a
 * byte of it leaves this module, the all-data-shards case included.
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../../core/cid.js'
import type { Logger } from '../../core/logger.js'
import { placementView, type ClusterMap, type ClusterMember } from '../../core/cluster-map.js'
import { CairnError } from '../../core/errors.js'
import { InsufficientDomainsError, place, placementsByEpoch } from '../../core/placement.js'
import type { Shard, ShardAddress } from '../../core/shard.js'
import type { CodecPool } from '../../core/workers/pool.js'
import type { ShardedChunk } from '../../core/workers/codec-jobs.js'
import { ChunkUnavailableError } from './errors.js'
import type { BadShardReason } from './metrics.js'
import type { NodeClientPool } from './node-clients.js'

/** One shard that could not be used, for metrics, logs and repair. */
export interface BadShardReport {
  cid: CID
  index: number
  memberId: string
  address: string
  reason: BadShardReason
  error?: Error
}

export interface FetchDeps {
  dataShards: number
  parityShards: number
  clients: NodeClientPool
  codec: CodecPool
  logger: Logger
  currentMap(): ClusterMap
  olderMaps(): readonly ClusterMap[]
  report(report: BadShardReport): void
  /** Counts a chunk that needed more than its data shards. */
  degraded(): void
}

interface Pending {
  cid: CID
  /** cidKey(cid): the outcome's key. */
  key: string
  shards: (Shard | undefined)[]
  chunkLengthBytes: number | undefined
  /** `${index}@${memberId}` already asked, so no round asks twice. */
  asked: Set<string>
  /** The member each good shard came from. */
  from: (ClusterMember | undefined)[]
  /** Where the current map places its shards. */
  placement: ClusterMember[]
  /** Some shard's node could not be reached: the chunk may come back. */
  unreachable: boolean
  degraded: boolean
}

interface Want {
  pending: Pending
  index: number
  member: ClusterMember
  /** Report a not-found answer: only where the shard is supposed to be. */
  reportMissing: boolean
}

/** Result per chunk key (core/cid.ts cidKey): the verified bytes or the error that chunk ends with. */
export type FetchOutcome = Map<string, Uint8Array | CairnError>

export class ChunkFetcher {
  readonly #d: FetchDeps
  readonly #total: number

  constructor(deps: FetchDeps) {
    this.#d = deps
    this.#total = deps.dataShards + deps.parityShards
  }

  /** Fetches, rebuilds and verifies every chunk; never throws for one chunk's failure. */
  async fetch(cids: readonly CID[]): Promise<FetchOutcome> {
    const k = this.#d.dataShards
    const pendings = cids.map((cid): Pending => ({ cid, key: cidKey(cid), shards: new Array<Shard | undefined>(this.#total).fill(undefined), from: new Array<ClusterMember | undefined>(this.#total).fill(undefined), placement: [], chunkLengthBytes: undefined, asked: new Set(), unreachable: false, degraded: false }))
    const map = this.#d.currentMap()
    for (const p of pendings) p.placement = this.#placeOrEmpty(p.cid, map)
    await this.#round(pendings.flatMap((p) => this.#atPlacement(p, 0, k)))
    const needParity = pendings.filter((p) => !this.#hasAllData(p))
    if (needParity.length > 0) await this.#round(needParity.flatMap((p) => this.#parityWants(p)))
    let short = pendings.filter((p) => this.#goodCount(p) < k)
    if (short.length > 0) await this.#round(short.flatMap((p) => this.#olderPlacements(p)))
    short = short.filter((p) => this.#goodCount(p) < k)
    if (short.length > 0) await this.#askEveryMember(short, map)
    for (const p of pendings) if (!this.#hasAllData(p) && this.#goodCount(p) >= k) p.degraded = true
    return this.#decodeAll(pendings)
  }

  #atPlacement(p: Pending, from: number, to: number): Want[] {
    const wants: Want[] = []
    for (let i = from; i < to && i < p.placement.length; i++) wants.push({ pending: p, index: i, member: p.placement[i] as ClusterMember, reportMissing: true })
    return wants
  }

  #parityWants(p: Pending): Want[] {
    return this.#atPlacement(p, this.#d.dataShards, this.#total)
  }

  #placeOrEmpty(cid: CID, map: ClusterMap): ClusterMember[] {
    try {
      return place(cid.bytes, this.#total, placementView(map))
    } catch (err) {
      // A map too small for k+m placed nothing there: the fallbacks still look.
      if (err instanceof InsufficientDomainsError) return []
      throw err
    }
  }

  #hasAllData(p: Pending): boolean {
    for (let i = 0; i < this.#d.dataShards; i++) if (p.shards[i] === undefined) return false
    return true
  }

  #goodCount(p: Pending): number {
    let n = 0
    for (const s of p.shards) if (s !== undefined) n++
    return n
  }

  #olderPlacements(p: Pending): Want[] {
    const wants: Want[] = []
    for (const { members } of placementsByEpoch(p.cid.bytes, this.#total, this.#d.olderMaps().map(placementView))) {
      members.forEach((member, index) => {
        if (p.shards[index] === undefined) wants.push({ pending: p, index, member, reportMissing: false })
      })
    }
    return wants
  }

  /** Asks every member which of the missing shards it holds, then fetches those. */
  async #askEveryMember(short: Pending[], map: ClusterMap): Promise<void> {
    const members = new Map<string, ClusterMember>()
    for (const m of [map, ...this.#d.olderMaps()].flatMap((x) => x.members)) if (!members.has(m.id)) members.set(m.id, m)
    const missing = short.flatMap((pending) => pending.shards.map((s, index) => (s === undefined ? { pending, index } : undefined)).filter((x) => x !== undefined))
    const found: Want[] = []
    await Promise.all(
      [...members.values()].map(async (member) => {
        const asking = missing.filter(({ pending, index }) => !pending.asked.has(`${index}@${member.id}`))
        for (const batch of cut(asking, this.#d.clients.batchShardsMax)) {
          try {
            const present = await this.#d.clients.client(member).hasShards(batch.map(({ pending, index }) => ({ chunkCid: pending.cid.bytes, index })))
            batch.forEach((w, i) => {
              if (present[i] === true) found.push({ ...w, member, reportMissing: true })
            })
          } catch (err) {
            if (isUnreachable(err)) for (const w of batch) w.pending.unreachable = true
            this.#d.logger.warn({ err, member: member.id }, 'HasShards failed while looking for missing shards')
            break
          }
        }
      }),
    )
    await this.#round(found)
  }

  /** One round: one GetShards per member (split at the batch limit), all members in parallel. */
  async #round(wants: Want[]): Promise<void> {
    const byMember = new Map<string, Want[]>()
    for (const w of wants) {
      const tag = `${w.index}@${w.member.id}`
      if (w.pending.shards[w.index] !== undefined || w.pending.asked.has(tag)) continue
      w.pending.asked.add(tag)
      const list = byMember.get(w.member.id) ?? []
      list.push(w)
      byMember.set(w.member.id, list)
    }
    await Promise.all([...byMember.values()].flatMap((list) => cut(list, this.#d.clients.batchShardsMax).map((batch) => this.#getBatch(batch))))
  }

  async #getBatch(batch: Want[]): Promise<void> {
    const member = (batch[0] as Want).member
    const addresses: ShardAddress[] = batch.map((w) => ({ chunkCid: w.pending.cid.bytes, index: w.index }))
    let results
    try {
      results = await this.#d.clients.client(member).getShards(addresses)
    } catch (err) {
      const reason = isUnreachable(err) ? 'unreachable' : 'error'
      for (const w of batch) {
        if (reason === 'unreachable') w.pending.unreachable = true
        this.#bad(w, reason, err)
      }
      return
    }
    results.forEach((r, i) => {
      const w = batch[i] as Want
      if (r.ok) this.#accept(w, r.shard)
      else if (r.error.name === 'ShardNotFoundError') {
        if (w.reportMissing) this.#bad(w, 'missing', r.error)
      } else this.#bad(w, r.error.name === 'ShardCorruptError' ? 'corrupt' : isUnreachable(r.error) ? 'unreachable' : 'error', r.error)
    })
  }

  /** Keeps a verified shard if it belongs to this policy and agrees with the chunk's other shards. */
  #accept(w: Want, shard: Shard): void {
    const p = w.pending
    const h = shard.header
    const lengthAgrees = p.chunkLengthBytes === undefined || p.chunkLengthBytes === h.chunkLengthBytes
    if (h.k !== this.#d.dataShards || h.m !== this.#d.parityShards || h.index !== w.index || !lengthAgrees) {
      this.#bad(w, 'mismatch', undefined)
      return
    }
    p.chunkLengthBytes = h.chunkLengthBytes
    p.shards[w.index] = shard
    p.from[w.index] = w.member
  }

  #bad(w: Want, reason: BadShardReason, err: unknown): void {
    this.#d.report({
      cid: w.pending.cid,
      index: w.index,
      memberId: w.member.id,
      address: w.member.address,
      reason,
      ...(err instanceof Error ? { error: err } : {}),
    })
  }

  /** Rebuilds and verifies every chunk with k good shards in the pool; the rest end unavailable. */
  async #decodeAll(pendings: Pending[]): Promise<FetchOutcome> {
    const outcome: FetchOutcome = new Map()
    const ready: Pending[] = []
    for (const p of pendings) {
      if (this.#goodCount(p) >= this.#d.dataShards) ready.push(p)
      else outcome.set(p.key, this.#unavailable(p))
    }
    if (ready.length === 0) return outcome
    let decoded: Uint8Array[] | undefined
    try {
      decoded = await this.#d.codec.decode({ dataShards: this.#d.dataShards, parityShards: this.#d.parityShards, chunks: ready.map((p) => this.#sharded(p)) })
    } catch {
      // One bad chunk fails the whole job: decode one by one to isolate it.
    }
    if (decoded !== undefined) {
      ready.forEach((p, i) => this.#settle(outcome, p, (decoded as Uint8Array[])[i] as Uint8Array))
      return outcome
    }
    await Promise.all(ready.map((p) => this.#decodeOne(outcome, p)))
    return outcome
  }

  /**
   * Decodes one chunk. When its shards pass their CRCs but the result does not
   * match the CID, one shard was stored wrong: rebuild without each shard in
   * turn (parity fetched first) and report the one whose absence fixes it.
   */
  async #decodeOne(outcome: FetchOutcome, p: Pending): Promise<void> {
    const { dataShards, parityShards } = this.#d
    let lastError: unknown
    for (let without = -1; without < this.#total; without++) {
      if (without >= 0 && p.shards[without] === undefined) continue
      const chunk = this.#sharded(p)
      if (without >= 0) chunk.shards[without] = undefined
      if (chunk.shards.filter((s) => s !== undefined).length < dataShards) continue
      try {
        const [bytes] = await this.#d.codec.decode({ dataShards, parityShards, chunks: [chunk] })
        if (without >= 0) {
          p.degraded = true
          this.#bad({ pending: p, index: without, member: p.from[without] as ClusterMember, reportMissing: true }, 'mismatch', lastError)
        }
        this.#settle(outcome, p, bytes as Uint8Array)
        return
      } catch (err) {
        lastError = err
        if (!(err instanceof CairnError && err.name === 'ChunkIntegrityError')) break
        if (without < 0 && this.#goodCount(p) === dataShards) await this.#round(this.#parityWants(p))
      }
    }
    this.#d.logger.error({ err: lastError, cid: p.cid.toString() }, 'chunk could not be rebuilt to match its CID')
    const kind = lastError instanceof CairnError && lastError.kind === 'unavailable' ? 'unavailable' : 'data-loss'
    outcome.set(p.key, new ChunkUnavailableError(p.cid.toString(), kind, `chunk ${p.cid.toString()} could not be rebuilt`, { cause: lastError }))
  }

  #settle(outcome: FetchOutcome, p: Pending, bytes: Uint8Array): void {
    if (p.degraded) this.#d.degraded()
    outcome.set(p.key, bytes)
  }

  #sharded(p: Pending): ShardedChunk {
    return { cid: p.cid.bytes, chunkLengthBytes: p.chunkLengthBytes as number, shards: Array.from({ length: this.#total }, (_, i) => p.shards[i]?.payload) }
  }

  #unavailable(p: Pending): ChunkUnavailableError {
    const good = this.#goodCount(p)
    const kind = p.unreachable ? 'unavailable' : 'data-loss'
    return new ChunkUnavailableError(p.cid.toString(), kind, `chunk ${p.cid.toString()}: ${good} good shards found, ${this.#d.dataShards} needed`)
  }
}

/** An error that means the node could not be reached in time, not that it refused. */
export function isUnreachable(err: unknown): boolean {
  return err instanceof CairnError && err.kind === 'unavailable'
}

export function cut<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
