/**
 * One batch of a repair pass: a few chunks this node holds shards of, taken
 * together so every step is one call per peer (or per store) for the whole
 * batch, not one per chunk: one local read for the headers, one `has` per
 * peer, one get per peer per round of source fetches, codec jobs of many
 * chunks, puts of up to `putBatchBytesMax`, and one durable delete. For every
 * chunk: learn k and m from a shard header, compute the placement exactly as
 * the engine's writer does (core `place` over the current map, no member
 * excluded), ask the other targets what they hold, plan (plan.ts), then move
 * and rebuild (overlapping), and delete what the targets confirmed.
 */
import { CID } from 'multiformats/cid'
import type { ClusterMap } from '../../core/cluster-map.js'
import { CairnError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import { InsufficientDomainsError, place, placementsByEpoch, rank } from '../../core/placement.js'
import { encodeShard, formatAddress, type Shard, type ShardAddress, type ShardHeader } from '../../core/shard.js'
import type { PeerLiveness, PeerShards } from '../mesh/types.js'
import type { GetResult, ShardStore } from '../shard-store.js'
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
  /** Codec jobs in flight at once (decode of one overlaps the encode of another). */
  rebuildConcurrency: number
  /** Most shard bytes in one put or get (a single larger shard goes alone). */
  putBatchBytesMax: number
  /** Chunks in one decode or encode job on the codec pool. */
  codecBatchChunks: number
}

/** A local copy to read, and where its verified shard goes. */
interface LocalWant {
  cid: CID
  copy: LocalCopy
  copies: Map<number, LocalCopy>
  shards: Map<number, Shard>
}

/** Most addresses in one local `getShards` call: bounds the shard bytes held by one read. */
const LOCAL_READ_MAX = 256
/** Most shards in one get from a peer (the mesh's per-call limit). */
const PEER_CALL_SHARDS_MAX = 256

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
type Asks<T = Prepared> = Map<string, { p: T; slot: number }[]>

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
    this.#tally.chunksExamined += groups.length
    const prepared = await this.#prepareAll(await this.#screen(groups))
    await this.#askTargets(prepared)
    for (const p of prepared) this.#plan(p)
    await this.#askElsewhere(prepared.filter((p) => (p.plan?.rebuilds.length ?? 0) > 0))
    for (const p of prepared) {
      if (p.elsewhere.size > 0) this.#plan(p)
      for (const d of (p.plan as ChunkPlan).deferred) this.#fail(d.reason, 1)
    }
    // Moves and rebuilds overlap: each waits on other members' fsyncs. A copy a rebuild
    // reads is never deleted before both finish, and only after its target confirmed.
    const [moved] = await Promise.all([this.#move(prepared), this.#rebuild(prepared.filter((p) => (p.plan?.rebuilds.length ?? 0) > 0))])
    const confirmed = prepared.flatMap((p) => (p.plan as ChunkPlan).deletes.map((index) => ({ chunkCid: p.cid.bytes, index })))
    // Deletes are fsynced index commits: one per kind per batch, never one per put.
    if (confirmed.length > 0) this.#tally.deletedShards += await this.deps.store.deleteShards(confirmed)
    if (moved.length > 0) await this.deps.store.deleteShards(moved)
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

  /**
   * The groups that need a closer look. A chunk whose only local copy is healthy,
   * sits on its own slot, and is not slot 0 needs nothing from this node when its
   * slot-0 target confirms a healthy copy: that holder is the lowest healthy slot,
   * so it rebuilds whatever else is missing. Slot i's target is `rank(c)[i]`
   * whatever k and m are (`place(c, n)` is a prefix of the ranking), so this takes
   * one `has` per member for the batch and no read at all, where learning k and m
   * costs a whole shard read per chunk. Unplaceable chunks are still reported by
   * their slot-0 holder, and rot in an unread copy is left to the scrubber.
   */
  async #screen(groups: readonly ChunkGroup[]): Promise<ChunkGroup[]> {
    const asks: Asks<{ cid: CID; group: ChunkGroup }> = new Map()
    const settled = new Set<ChunkGroup>()
    for (const group of groups) {
      const [copy, ...more] = group.copies
      if (copy === undefined || more.length > 0 || copy.corrupt || copy.index === 0) continue
      const ranking = rank(group.cid, this.map)
      if (ranking[copy.index]?.id !== this.deps.selfId) continue
      this.#addAsk(asks, (ranking[0] as { id: string }).id, { cid: CID.decode(group.cid), group }, 0)
    }
    await this.#ask(asks, ({ group }, _slot, has) => {
      if (has) settled.add(group)
    })
    return groups.filter((g) => !settled.has(g))
  }

  /**
   * k, m and the chunk length of every chunk, from one verified local copy each:
   * all chunks' first copies in one store call, then the next copy of those whose
   * read failed, until each has a header or no copy left (then its peers are asked).
   */
  async #prepareAll(groups: readonly ChunkGroup[]): Promise<Prepared[]> {
    const chunks = groups.map((g) => ({ cid: CID.decode(g.cid), copies: new Map(g.copies.map((c) => [c.index, { ...c }])), shards: new Map<number, Shard>(), tried: new Set<number>() }))
    for (;;) {
      const wants: LocalWant[] = []
      for (const c of chunks) {
        if (c.shards.size > 0) continue
        const copy = [...c.copies.values()].find((x) => !x.corrupt && !c.tried.has(x.index))
        if (copy === undefined) continue
        c.tried.add(copy.index)
        wants.push({ cid: c.cid, copy, copies: c.copies, shards: c.shards })
      }
      if (wants.length === 0) break
      await this.#readLocalMany(wants)
    }
    const prepared: Prepared[] = []
    for (const c of chunks) {
      const first = c.shards.values().next().value ?? (await this.#headerFromPeers(c.cid, c.shards))
      if (first === undefined) {
        this.#fail('no-header', c.copies.size)
        continue
      }
      const p = this.#placed(c.cid, c.copies, c.shards, first)
      if (p !== undefined) prepared.push(p)
    }
    return prepared
  }

  #placed(cid: CID, copies: Map<number, LocalCopy>, shards: Map<number, Shard>, first: Shard): Prepared | undefined {
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

  /**
   * Reads local copies in one store call per `LOCAL_READ_MAX`; each verified shard
   * lands in its chunk's `shards`. Copies found bad meanwhile are marked corrupt,
   * vanished ones dropped, other read errors counted.
   */
  async #readLocalMany(wants: readonly LocalWant[]): Promise<void> {
    for (let from = 0; from < wants.length; from += LOCAL_READ_MAX) {
      const part = wants.slice(from, from + LOCAL_READ_MAX)
      const results = await this.deps.store.getShards(part.map((w) => ({ chunkCid: w.cid.bytes, index: w.copy.index })))
      part.forEach((w, i) => {
        const r = results[i] as GetResult
        if (r.ok) w.shards.set(w.copy.index, r.shard)
        else this.#localReadFailed(r.error, w.copy, w.copies)
      })
    }
  }

  #localReadFailed(err: CairnError, copy: LocalCopy, copies: Map<number, LocalCopy>): void {
    if (err.name === 'ShardNotFoundError') copies.delete(copy.index)
    else if (err.name === 'ShardCorruptError') copy.corrupt = true
    else this.#fail('read-failed', 1)
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

  #addAsk<T>(asks: Asks<T>, member: string, p: T, slot: number): void {
    if (member === this.deps.selfId || !this.deps.liveness.isAlive(member)) return
    const list = asks.get(member) ?? []
    list.push({ p, slot })
    asks.set(member, list)
  }

  async #ask<T extends { cid: CID }>(asks: Asks<T>, onAnswer: (p: T, slot: number, has: boolean, member: string) => void): Promise<void> {
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

  /** Rebalance: push each misplaced copy to its target; resolves the copies the target confirmed (the caller deletes them here). */
  async #move(prepared: Prepared[]): Promise<ShardAddress[]> {
    const outgoing: Outgoing = new Map()
    const unread: LocalWant[] = []
    for (const p of prepared) {
      for (const { index } of (p.plan as ChunkPlan).moves) {
        if (!p.shards.has(index)) unread.push({ cid: p.cid, copy: p.copies.get(index) as LocalCopy, copies: p.copies, shards: p.shards })
      }
    }
    await this.#readLocalMany(unread)
    for (const p of prepared) {
      for (const { index, target } of (p.plan as ChunkPlan).moves) {
        const shard = p.shards.get(index)
        if (shard !== undefined) addOutgoing(outgoing, target, shard)
      }
    }
    const moved: ShardAddress[] = []
    await this.#sendAll(outgoing, async (target, shards) => {
      // The target confirmed durability before this line runs: only now may the local copy go.
      for (const s of shards) moved.push({ chunkCid: s.header.chunkCid, index: s.header.index })
      this.#tally.movedShards += shards.length
      this.#tally.movedBytes += byteSum(shards)
      this.deps.logger.debug({ target, shards: shards.length }, 'repair: moved shards to their placement')
    })
    return moved
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

  /**
   * Repair: gather k sources for every chunk to rebuild (batched reads and gets),
   * decode and re-encode them in codec jobs of many chunks, then put the rebuilt
   * shards per target.
   */
  async #rebuild(prepared: Prepared[]): Promise<void> {
    if (prepared.length === 0) return
    const sources = await this.#gatherAll(prepared)
    const jobs = new Map<string, Prepared[]>()
    for (const p of prepared) {
      const have = (sources.get(p) as Map<number, Uint8Array>).size
      if (have < p.header.k) {
        this.deps.logger.warn({ cid: p.cid.toString(), have, k: p.header.k }, 'repair: fewer than k healthy shards reachable')
        this.#fail('insufficient-shards', (p.plan as ChunkPlan).rebuilds.length)
        continue
      }
      // One job holds chunks of one geometry, hash and multicodec.
      const key = `${p.header.k}+${p.header.m}/${p.cid.multihash.code}/${p.cid.code}`
      const list = jobs.get(key) ?? []
      list.push(p)
      jobs.set(key, list)
    }
    const queue = [...jobs.values()].flatMap((list) => cutByCount(list, this.deps.codecBatchChunks))
    const outgoing: Outgoing = new Map()
    const worker = async (): Promise<void> => {
      for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
        for (const [target, shard] of await this.#recode(job, sources)) addOutgoing(outgoing, target, shard)
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.deps.rebuildConcurrency, queue.length) }, worker))
    await this.#sendAll(outgoing, async (_target, shards) => {
      this.#tally.repairedShards += shards.length
      this.#tally.repairedBytes += byteSum(shards)
    })
  }

  /**
   * Decodes the chunks of one job (each checked against its CID), re-encodes them
   * and cuts the lost shards. A job that fails verification is retried chunk by
   * chunk, so one bad chunk costs only its own rebuild; nothing of it is written.
   */
  async #recode(job: Prepared[], sources: Map<Prepared, Map<number, Uint8Array>>): Promise<[string, Shard][]> {
    const { k, m } = (job[0] as Prepared).header
    let payloads: Uint8Array[][]
    try {
      const sharded = job.map((p) => ({ cid: p.cid.bytes, chunkLengthBytes: p.header.chunkLengthBytes, shards: Array.from({ length: k + m }, (_, i) => sources.get(p)?.get(i)) }))
      const chunks = await this.deps.codec.decode(k, m, sharded)
      payloads = await this.deps.codec.encode(k, m, job.map((p) => p.cid), chunks)
    } catch (err) {
      if (!(err instanceof CairnError) || err.name === 'AssertionFailedError') throw err
      if (job.length > 1) return (await Promise.all(job.map((p) => this.#recode([p], sources)))).flat()
      const p = job[0] as Prepared
      this.deps.logger.error({ err, cid: p.cid.toString() }, 'repair: rebuilt chunk failed verification; nothing written')
      this.#fail('verify-failed', (p.plan as ChunkPlan).rebuilds.length)
      return []
    }
    return job.flatMap((p, j) =>
      (p.plan as ChunkPlan).rebuilds.map(({ index, target }): [string, Shard] => [
        target,
        encodeShard({ chunkCid: p.cid.bytes, k, m, index, chunkLengthBytes: p.header.chunkLengthBytes, payload: (payloads[j] as Uint8Array[])[index] as Uint8Array }),
      ]),
    )
  }

  /**
   * Payloads of k healthy shards per chunk: shards in hand, then local copies (one
   * store call for the batch), then targets that confirmed theirs and members an
   * earlier epoch left a copy on, with one get per member per round.
   */
  async #gatherAll(prepared: Prepared[]): Promise<Map<Prepared, Map<number, Uint8Array>>> {
    const sources = new Map(prepared.map((p) => [p, new Map<number, Uint8Array>()]))
    const acceptAll = (p: Prepared): void => {
      for (const shard of p.shards.values()) accept(p, sources.get(p) as Map<number, Uint8Array>, shard)
    }
    prepared.forEach(acceptAll)
    const tried = new Map(prepared.map((p) => [p, new Set<number>()]))
    for (;;) {
      const wants: LocalWant[] = []
      for (const p of prepared) {
        const have = sources.get(p) as Map<number, Uint8Array>
        const seen = tried.get(p) as Set<number>
        const untried = [...p.copies.values()].filter((c) => !c.corrupt && !have.has(c.index) && !seen.has(c.index))
        for (const copy of untried.slice(0, Math.max(0, p.header.k - have.size))) {
          seen.add(copy.index)
          wants.push({ cid: p.cid, copy, copies: p.copies, shards: p.shards })
        }
      }
      if (wants.length === 0) break
      await this.#readLocalMany(wants)
      prepared.forEach(acceptAll)
    }
    await this.#fetchAll(prepared, sources)
    return sources
  }

  /** Fetches the sources still missing, round by round, until every chunk has k or runs out of candidates. */
  async #fetchAll(prepared: Prepared[], sources: Map<Prepared, Map<number, Uint8Array>>): Promise<void> {
    const candidates = new Map<Prepared, { slot: number; member: string }[]>()
    for (const p of prepared) {
      const have = sources.get(p) as Map<number, Uint8Array>
      const list = [...p.remote].filter(([slot, s]) => s === 'healthy' && !have.has(slot)).map(([slot]) => ({ slot, member: p.targets[slot] as string }))
      for (const [slot, member] of p.elsewhere) if (!have.has(slot) && p.remote.get(slot) !== 'healthy') list.push({ slot, member })
      candidates.set(p, list)
    }
    for (;;) {
      const asks: Asks = new Map()
      for (const p of prepared) {
        const have = sources.get(p) as Map<number, Uint8Array>
        for (const { slot, member } of (candidates.get(p) as { slot: number; member: string }[]).splice(0, Math.max(0, p.header.k - have.size))) {
          const list = asks.get(member) ?? []
          list.push({ p, slot })
          asks.set(member, list)
        }
      }
      if (asks.size === 0) return
      await Promise.all(
        [...asks].map(async ([member, list]) => {
          for (const part of cutByBytesOf(list, (a) => a.p.shardBytes, this.deps.putBatchBytesMax).flatMap((run) => cutByCount(run, PEER_CALL_SHARDS_MAX))) {
            await this.deps.bucket.take(part.reduce((n, a) => n + a.p.shardBytes, 0), this.signal)
            const got = await this.#get(member, part.map(({ p, slot }) => ({ chunkCid: p.cid.bytes, index: slot })))
            part.forEach(({ p }, i) => {
              const shard = got[i]
              if (shard !== undefined) accept(p, sources.get(p) as Map<number, Uint8Array>, shard)
            })
          }
        }),
      )
    }
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
  return cutByBytesOf(shards, (s) => s.bytes.byteLength, maxBytes)
}

function cutByBytesOf<T>(items: readonly T[], bytesOf: (item: T) => number, maxBytes: number): T[][] {
  const runs: T[][] = []
  let run: T[] = []
  let bytes = 0
  for (const item of items) {
    const size = bytesOf(item)
    if (run.length > 0 && bytes + size > maxBytes) {
      runs.push(run)
      run = []
      bytes = 0
    }
    run.push(item)
    bytes += size
  }
  if (run.length > 0) runs.push(run)
  return runs
}

function cutByCount<T>(items: readonly T[], max: number): T[][] {
  const runs: T[][] = []
  for (let from = 0; from < items.length; from += max) runs.push(items.slice(from, from + max))
  return runs
}

/** A source shard counts only if it agrees with the chunk's geometry (a stray copy of another write does not). */
function accept(p: Prepared, sources: Map<number, Uint8Array>, shard: Shard): void {
  const h = shard.header
  if (h.k === p.header.k && h.m === p.header.m && h.chunkLengthBytes === p.header.chunkLengthBytes) sources.set(h.index, shard.payload)
}

function byteSum(shards: readonly Shard[]): number {
  return shards.reduce((n, s) => n + s.bytes.byteLength, 0)
}
