/**
 * One batch of a repair pass: a few chunks this node holds shards of, taken
 * together so each peer gets one `has` call and one put per batch. For every
 * chunk: learn k and m from a shard header, compute the placement exactly as
 * the engine's writer does (core `place` over the current map, no member
 * excluded), ask the other targets what they hold, plan (plan.ts), then move,
 * delete and rebuild.
 */
import { CID } from 'multiformats/cid'
import type { ClusterMap } from '../../core/cluster-map.js'
import { CairnError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import { InsufficientDomainsError, place, placementsByEpoch, rank } from '../../core/placement.js'
import { encodeShard, formatAddress, type Shard, type ShardAddress, type ShardHeader } from '../../core/shard.js'
import type { PeerLiveness, PeerShards } from '../mesh/types.js'
import type { ShardStore } from '../shard-store.js'
import { PassAbortedError, type TokenBucket } from '../scrub/pacing.js'
import type { RebuildCodec } from './codec.js'
import type { RepairFailureReason } from './metrics.js'
import { planChunk, type ChunkPlan, type LocalCopy, type RemoteSlot } from './plan.js'

/** The rows of one chunk in the local store's listing. */
export interface ChunkGroup {
  cid: Uint8Array
  copies: LocalCopy[]
}

/** What a batch did; the pass adds these up. */
export interface BatchTally {
  chunksExamined: number
  movedShards: number
  movedBytes: number
  repairedShards: number
  repairedBytes: number
  fetchedBytes: number
  deletedShards: number
  failures: Map<RepairFailureReason, number>
}

export interface BatchDeps {
  selfId: string
  store: ShardStore
  peers: PeerShards
  liveness: PeerLiveness
  codec: RebuildCodec
  bucket: TokenBucket
  logger: Logger
  /** Most addresses in one `has` call. */
  hasBatchMax: number
  /** Chunks rebuilt at once (fetch and decode overlap across them). */
  rebuildConcurrency: number
  /** Most shard bytes in one put (a single larger shard goes alone). */
  putBatchBytesMax: number
}

interface Prepared {
  cid: CID
  copies: Map<number, LocalCopy>
  header: Pick<ShardHeader, 'k' | 'm' | 'chunkLengthBytes'>
  /** Encoded size of one shard of this chunk: what pacing charges per transfer before the bytes are in hand. */
  shardBytes: number
  targets: string[]
  /** Verified shards in hand (local reads, and any fetched to learn the header), by index. */
  shards: Map<number, Shard>
  remote: Map<number, RemoteSlot>
  /** Slots a live member outside the placement holds (an earlier epoch put them there), by slot. */
  elsewhere: Map<number, string>
  plan?: ChunkPlan
}

type Outgoing = Map<string, Shard[]>
type Asks = Map<string, { p: Prepared; slot: number }[]>

export function emptyTally(): BatchTally {
  return { chunksExamined: 0, movedShards: 0, movedBytes: 0, repairedShards: 0, repairedBytes: 0, fetchedBytes: 0, deletedShards: 0, failures: new Map() }
}

export class RepairBatch {
  readonly #tally = emptyTally()

  constructor(
    private readonly deps: BatchDeps,
    private readonly map: ClusterMap,
    /** Earlier maps, newest first (where misplaced copies of missing shards may still be). */
    private readonly history: readonly ClusterMap[],
    private readonly settledBeforeUnixMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {}

  async run(groups: readonly ChunkGroup[]): Promise<BatchTally> {
    const prepared: Prepared[] = []
    for (const group of groups) {
      this.#tally.chunksExamined += 1
      const p = await this.#prepare(group)
      if (p !== undefined) prepared.push(p)
    }
    await this.#askTargets(prepared)
    for (const p of prepared) this.#plan(p)
    await this.#askElsewhere(prepared.filter((p) => (p.plan?.rebuilds.length ?? 0) > 0))
    for (const p of prepared) {
      if (p.elsewhere.size > 0) this.#plan(p)
      for (const d of (p.plan as ChunkPlan).deferred) this.#fail(d.reason, 1)
    }
    await this.#deleteConfirmed(prepared)
    await this.#move(prepared)
    await this.#rebuild(prepared.filter((p) => (p.plan?.rebuilds.length ?? 0) > 0))
    return this.#tally
  }

  /** False when this node's own slot is above m: it could never be the lowest healthy slot of a rebuildable chunk. */
  #mayRebuild(p: Prepared): boolean {
    const own = p.targets.indexOf(this.deps.selfId)
    return own < 0 || own <= p.header.m
  }

  #plan(p: Prepared): void {
    p.plan = planChunk({
      mayRebuild: this.#mayRebuild(p),
      selfId: this.deps.selfId,
      targets: p.targets,
      local: p.copies,
      remote: (slot) => p.remote.get(slot) ?? 'unknown',
      settledBeforeUnixMs: this.settledBeforeUnixMs,
      elsewhere: (slot) => p.elsewhere.has(slot),
    })
  }

  #fail(reason: RepairFailureReason, shards: number): void {
    this.#tally.failures.set(reason, (this.#tally.failures.get(reason) ?? 0) + shards)
  }

  // ---- learning about the chunk -------------------------------------------------

  async #prepare(group: ChunkGroup): Promise<Prepared | undefined> {
    const cid = CID.decode(group.cid)
    const copies = new Map(group.copies.map((c) => [c.index, { ...c }]))
    const shards = new Map<number, Shard>()
    let first = await this.#readLocalHeader(cid, copies, shards)
    first ??= await this.#headerFromPeers(cid, shards)
    if (first === undefined) {
      this.#fail('no-header', copies.size)
      return undefined
    }
    const { k, m, chunkLengthBytes } = first.header
    let targets: string[]
    try {
      targets = place(cid.bytes, k + m, this.map).map((member) => member.id)
    } catch (err) {
      if (!(err instanceof InsufficientDomainsError)) throw err
      this.#fail('unplaceable', copies.size)
      return undefined
    }
    return { cid, copies, header: { k, m, chunkLengthBytes }, shardBytes: first.bytes.byteLength, targets, shards, remote: new Map(), elsewhere: new Map() }
  }

  /** The first local copy that reads back verified; copies found bad meanwhile are marked corrupt, vanished ones dropped. */
  async #readLocalHeader(cid: CID, copies: Map<number, LocalCopy>, shards: Map<number, Shard>): Promise<Shard | undefined> {
    for (const copy of [...copies.values()]) {
      if (copy.corrupt) continue
      const shard = await this.#readLocal(cid, copy, copies)
      if (shard === undefined) continue
      shards.set(copy.index, shard)
      return shard
    }
    return undefined
  }

  async #readLocal(cid: CID, copy: LocalCopy, copies: Map<number, LocalCopy>): Promise<Shard | undefined> {
    try {
      return await this.deps.store.getShard({ chunkCid: cid.bytes, index: copy.index })
    } catch (err) {
      if (!(err instanceof CairnError)) throw err
      if (err.name === 'ShardNotFoundError') copies.delete(copy.index)
      else if (err.name === 'ShardCorruptError') copy.corrupt = true
      else this.#fail('read-failed', 1)
      return undefined
    }
  }

  /**
   * Every local copy is bad: ask the members of the chunk's ranking for their
   * own slot's shard until one answers. Placement of slot i does not depend on
   * k+m (`place(c, n)` is a prefix of `rank(c)`), so the ranking finds them
   * without knowing k and m.
   */
  async #headerFromPeers(cid: CID, shards: Map<number, Shard>): Promise<Shard | undefined> {
    const ranking = rank(cid.bytes, this.map)
    for (let slot = 0; slot < ranking.length; slot++) {
      const member = (ranking[slot] as { id: string }).id
      if (member === this.deps.selfId || !this.deps.liveness.isAlive(member)) continue
      const [result] = await this.#get(member, [{ chunkCid: cid.bytes, index: slot }])
      if (result === undefined) continue
      shards.set(slot, result)
      return result
    }
    return undefined
  }

  /**
   * One `has` per live target member for the whole batch; a member that fails
   * leaves its slots unknown. A holder that can never be responsible for
   * rebuilds (see `mayRebuild`) asks only about its misplaced copies.
   */
  async #askTargets(prepared: Prepared[]): Promise<void> {
    const asks: Asks = new Map()
    for (const p of prepared) {
      if (this.#mayRebuild(p)) p.targets.forEach((target, slot) => this.#addAsk(asks, target, p, slot))
      else for (const index of p.copies.keys()) this.#addAsk(asks, p.targets[index] ?? this.deps.selfId, p, index)
    }
    await this.#ask(asks, (p, slot, has) => p.remote.set(slot, has ? 'healthy' : 'missing'))
  }

  /**
   * For each shard about to be rebuilt, asks the live members that earlier
   * epochs placed it on: after a membership change most "missing" shards are
   * still there, and moving one costs one transfer where a rebuild costs k.
   */
  async #askElsewhere(prepared: Prepared[]): Promise<void> {
    if (this.history.length === 0) return
    const asks: Asks = new Map()
    for (const p of prepared) {
      const n = p.targets.length
      let older: { members: readonly { id: string }[] }[]
      try {
        older = placementsByEpoch(p.cid.bytes, n, this.history)
      } catch (err) {
        if (!(err instanceof CairnError)) throw err
        continue // a malformed history only costs the optimisation
      }
      for (const { index } of (p.plan as ChunkPlan).rebuilds) {
        const seen = new Set([p.targets[index]])
        for (const epoch of older) {
          const member = (epoch.members[index] as { id: string }).id
          if (seen.has(member)) continue
          seen.add(member)
          this.#addAsk(asks, member, p, index)
        }
      }
    }
    await this.#ask(asks, (p, slot, has, member) => {
      if (has && !p.elsewhere.has(slot)) p.elsewhere.set(slot, member)
    })
  }

  #addAsk(asks: Asks, member: string, p: Prepared, slot: number): void {
    if (member === this.deps.selfId || !this.deps.liveness.isAlive(member)) return
    const list = asks.get(member) ?? []
    list.push({ p, slot })
    asks.set(member, list)
  }

  async #ask(asks: Asks, onAnswer: (p: Prepared, slot: number, has: boolean, member: string) => void): Promise<void> {
    await Promise.all(
      [...asks].map(async ([member, list]) => {
        for (let from = 0; from < list.length; from += this.deps.hasBatchMax) {
          const part = list.slice(from, from + this.deps.hasBatchMax)
          try {
            const answers = await this.deps.peers.has(member, part.map(({ p, slot }) => ({ chunkCid: p.cid.bytes, index: slot })), this.#options())
            part.forEach(({ p, slot }, i) => onAnswer(p, slot, answers[i] === true, member))
          } catch (err) {
            // Its slots stay unknown: the plan defers them (counted as target-down) to the next pass.
            this.#rethrowUnexpected(err)
            this.deps.logger.warn({ err, member }, 'repair: has() failed; its slots wait for the next pass')
          }
        }
      }),
    )
  }

  /** Only a peer's or the store's typed refusal is handled in place; an abort ends the pass, anything else is a bug. */
  #rethrowUnexpected(err: unknown): void {
    if (err instanceof PassAbortedError) throw err
    if (this.signal?.aborted === true) throw new PassAbortedError('pass aborted', { cause: err })
    if (!(err instanceof CairnError)) throw err
  }

  #options(): { signal?: AbortSignal } {
    return this.signal === undefined ? {} : { signal: this.signal }
  }

  // ---- acting -----------------------------------------------------------------

  /** Misplaced local copies whose target confirmed a healthy copy. */
  async #deleteConfirmed(prepared: Prepared[]): Promise<void> {
    const addresses = prepared.flatMap((p) => (p.plan as ChunkPlan).deletes.map((index) => ({ chunkCid: p.cid.bytes, index })))
    if (addresses.length === 0) return
    this.#tally.deletedShards += await this.deps.store.deleteShards(addresses)
  }

  /** Rebalance: push each misplaced copy to its target, then delete it here, and only for the pushes the target confirmed. */
  async #move(prepared: Prepared[]): Promise<void> {
    const outgoing: Outgoing = new Map()
    for (const p of prepared) {
      for (const { index, target } of (p.plan as ChunkPlan).moves) {
        const copy = p.copies.get(index) as LocalCopy
        const shard = p.shards.get(index) ?? (await this.#readLocal(p.cid, copy, p.copies))
        if (shard === undefined) continue
        addOutgoing(outgoing, target, shard)
      }
    }
    await this.#sendAll(outgoing, async (target, shards) => {
      const moved = shards.map((s) => ({ chunkCid: s.header.chunkCid, index: s.header.index }))
      // The target confirmed durability before this line runs: only now may the local copy go.
      await this.deps.store.deleteShards(moved)
      this.#tally.movedShards += shards.length
      this.#tally.movedBytes += byteSum(shards)
      this.deps.logger.debug({ target, shards: shards.length }, 'repair: moved shards to their placement')
    })
  }

  /**
   * Sends each member's shards in puts of at most `putBatchBytesMax` (pacing each
   * transfer), and runs `onDurable` for each put that resolved; a failed put
   * leaves its shards where they were.
   */
  async #sendAll(outgoing: Outgoing, onDurable: (target: string, shards: Shard[]) => Promise<void>): Promise<void> {
    await Promise.all(
      [...outgoing].map(async ([target, shards]) => {
        for (const part of cutByBytes(shards, this.deps.putBatchBytesMax)) {
          try {
            if (target === this.deps.selfId) {
              await this.deps.store.putShards(part)
            } else {
              await this.deps.bucket.take(byteSum(part), this.signal)
              await this.deps.peers.put(target, part, this.#options())
            }
          } catch (err) {
            this.#rethrowUnexpected(err)
            this.deps.logger.warn({ err, target, shards: part.length }, 'repair: put failed; retrying next pass')
            this.#fail('put-failed', part.length)
            continue
          }
          await onDurable(target, part)
        }
      }),
    )
  }

  /** Repair: rebuild every shard this node is responsible for, then put them per target. */
  async #rebuild(prepared: Prepared[]): Promise<void> {
    const outgoing: Outgoing = new Map()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < prepared.length) {
        const p = prepared[next++] as Prepared
        const rebuilt = await this.#rebuildChunk(p)
        for (const [target, shard] of rebuilt) addOutgoing(outgoing, target, shard)
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.deps.rebuildConcurrency, prepared.length) }, worker))
    await this.#sendAll(outgoing, async (_target, shards) => {
      this.#tally.repairedShards += shards.length
      this.#tally.repairedBytes += byteSum(shards)
    })
  }

  /** The chunk's lost shards, rebuilt from any k healthy ones and checked against the CID before anything leaves. */
  async #rebuildChunk(p: Prepared): Promise<[string, Shard][]> {
    const rebuilds = (p.plan as ChunkPlan).rebuilds
    const { k, m, chunkLengthBytes } = p.header
    const sources = await this.#gatherSources(p)
    if (sources.size < k) {
      this.deps.logger.warn({ cid: p.cid.toString(), have: sources.size, k }, 'repair: fewer than k healthy shards reachable')
      this.#fail('insufficient-shards', rebuilds.length)
      return []
    }
    let payloads: Uint8Array[]
    try {
      const chunk = await this.deps.codec.decode(k, m, { cid: p.cid.bytes, chunkLengthBytes, shards: Array.from({ length: k + m }, (_, i) => sources.get(i)) })
      payloads = await this.deps.codec.encode(k, m, p.cid, chunk)
    } catch (err) {
      if (!(err instanceof CairnError) || err.name === 'AssertionFailedError') throw err
      this.deps.logger.error({ err, cid: p.cid.toString() }, 'repair: rebuilt chunk failed verification; nothing written')
      this.#fail('verify-failed', rebuilds.length)
      return []
    }
    return rebuilds.map(({ index, target }) => [
      target,
      encodeShard({ chunkCid: p.cid.bytes, k, m, index, chunkLengthBytes, payload: payloads[index] as Uint8Array }),
    ])
  }

  /** Payloads of k healthy shards: local copies first (no transfer), then the targets that confirmed theirs. */
  async #gatherSources(p: Prepared): Promise<Map<number, Uint8Array>> {
    const { k } = p.header
    const sources = new Map<number, Uint8Array>()
    const accept = (shard: Shard): void => {
      const h = shard.header
      if (h.k === p.header.k && h.m === p.header.m && h.chunkLengthBytes === p.header.chunkLengthBytes) sources.set(h.index, shard.payload)
    }
    for (const shard of p.shards.values()) accept(shard)
    for (const copy of p.copies.values()) {
      if (sources.size >= k) return sources
      if (copy.corrupt || sources.has(copy.index)) continue
      const shard = await this.#readLocal(p.cid, copy, p.copies)
      if (shard !== undefined) accept(shard)
    }
    const candidates = [...p.remote].filter(([slot, s]) => s === 'healthy' && !sources.has(slot)).map(([slot]) => ({ slot, member: p.targets[slot] as string }))
    for (const [slot, member] of p.elsewhere) if (!sources.has(slot) && p.remote.get(slot) !== 'healthy') candidates.push({ slot, member })
    while (sources.size < k && candidates.length > 0) {
      const round = candidates.splice(0, k - sources.size)
      const fetched = await Promise.all(round.map(({ slot, member }) => this.#fetch(p, slot, member)))
      for (const shard of fetched) if (shard !== undefined) accept(shard)
    }
    return sources
  }

  async #fetch(p: Prepared, slot: number, member: string): Promise<Shard | undefined> {
    await this.deps.bucket.take(p.shardBytes, this.signal)
    const [shard] = await this.#get(member, [{ chunkCid: p.cid.bytes, index: slot }])
    return shard
  }

  /** Peer shards that arrived verified; failures are logged and left out. */
  async #get(member: string, addresses: ShardAddress[]): Promise<(Shard | undefined)[]> {
    try {
      const results = await this.deps.peers.get(member, addresses, this.#options())
      return results.map((r, i) => {
        if (r.ok) {
          this.#tally.fetchedBytes += r.shard.bytes.byteLength
          return r.shard
        }
        this.deps.logger.warn({ err: r.error, member, shard: formatAddress(addresses[i] as ShardAddress) }, 'repair: peer could not serve a shard')
        return undefined
      })
    } catch (err) {
      this.#rethrowUnexpected(err)
      this.deps.logger.warn({ err, member }, 'repair: get() failed')
      this.#fail('peer-unavailable', addresses.length)
      return addresses.map(() => undefined)
    }
  }
}

function addOutgoing(outgoing: Outgoing, target: string, shard: Shard): void {
  const list = outgoing.get(target) ?? []
  list.push(shard)
  outgoing.set(target, list)
}

/** Consecutive runs of at most `maxBytes` each; a single larger shard gets a run of its own. */
function cutByBytes(shards: readonly Shard[], maxBytes: number): Shard[][] {
  const runs: Shard[][] = []
  let run: Shard[] = []
  let bytes = 0
  for (const s of shards) {
    if (run.length > 0 && bytes + s.bytes.byteLength > maxBytes) {
      runs.push(run)
      run = []
      bytes = 0
    }
    run.push(s)
    bytes += s.bytes.byteLength
  }
  if (run.length > 0) runs.push(run)
  return runs
}

function byteSum(shards: readonly Shard[]): number {
  return shards.reduce((n, s) => n + s.bytes.byteLength, 0)
}
