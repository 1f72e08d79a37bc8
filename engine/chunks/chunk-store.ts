/**
 * The erasure-coded chunk store: the engine's only way to storage nodes for data.
 *
 * Writes hash and encode off the event loop, place each chunk's k+m shards by
 * HRW over the current cluster map and send one put batch per node (split only
 * at the node's limits), all nodes in parallel. Reads go through a bounded
 * cache, coalesce concurrent reads of one CID, and fall back to parity, older
 * epochs and finally every member (chunk-fetch.ts). docs/adr/0010 explains the
 * quorum, the budget and the fallbacks.
 */
import { CID } from 'multiformats/cid'
import type { Registry } from 'prom-client'
import { code as DAG_CBOR_CODE } from '@ipld/dag-cbor'
import { RAW_CODEC, cidHash, cidKey, type ChunkHash } from '../../core/cid.js'
import { placementView, type ClusterMapProvider, type ClusterMember } from '../../core/cluster-map.js'
export type { ClusterMapProvider } from '../../core/cluster-map.js'
import { CairnError, InvalidArgumentError, ShuttingDownError, assert } from '../../core/errors.js'
import { silentLogger, type Logger } from '../../core/logger.js'
import { place } from '../../core/placement.js'
import { encodeShard, type Shard } from '../../core/shard.js'
import type { Startable } from '../../core/startable.js'
import type { EncodedChunk } from '../../core/workers/codec-jobs.js'
import type { CodecPool } from '../../core/workers/pool.js'
import type { ChunkCodec, ChunkStore } from '../contracts.js'
import { ByteBudget } from './byte-budget.js'
import { ByteLru } from './cache.js'
import { ChunkFetcher, isUnreachable, type BadShardReport } from './chunk-fetch.js'
import { ChunkUnavailableError, ChunkWriteError, ChunkWriteRejectedError, NodeDeadlineError } from './errors.js'
import { createChunkStoreMetrics, type ChunkStoreMetrics } from './metrics.js'
import { createNodeClientPool, type NodeClientPool, type NodeClientPoolInit } from './node-clients.js'

export type { BadShardReport } from './chunk-fetch.js'

/** The coding policy of one StoragePolicy. */
export interface ChunkPolicy {
  /** k */
  dataShards: number
  /** m */
  parityShards: number
  hash: ChunkHash
  /** Largest data (raw) chunk. */
  chunkSizeBytes: number
}


/**
 * Memory bounds of a chunk store; engine/host/memory-budget.ts adds them up. The put
 * bound is 8 MiB: the flusher keeps 4 batches of 2 MiB in flight, and every put byte
 * costs up to 1 + 4(k+m)/k bytes (packed, shards, framed shards, the serialized batch and
 * gRPC's length-prefixed copy of it) while in flight (ADR 0010, 2026-11-23).
 */
export const CHUNK_STORE_MEMORY_DEFAULTS = { cacheMaxBytes: 24 * 1024 * 1024, inFlightPutBytesMax: 8 * 1024 * 1024 } as const

export interface ChunkStoreInit {
  policy: ChunkPolicy
  /** Bytes of verified chunks kept for reads. @default 25165824 (24 MiB) */
  cacheMaxBytes?: number
  /** Chunk bytes of puts in progress at once; further puts wait (backpressure). Each costs up to 1 + 4(k+m)/k bytes while in flight. @default 8388608 (8 MiB) */
  inFlightPutBytesMax?: number
  /** A put call is cut into waves of at most this many chunk bytes; each wave sends one batch per node. @default 16777216 (16 MiB) */
  putWaveBytesMax?: number
  /** Durable shards a chunk needs before a put succeeds, in [k, k+m]. @default k */
  writeQuorumShards?: number
  /** Largest dag-cbor chunk (manifest page). @default 1048576 (1 MiB) */
  pageChunkBytesMax?: number
  /** Client options when the store creates its own node-client pool. */
  clients?: NodeClientPoolInit
}

export interface ChunkStoreComponents {
  maps: ClusterMapProvider
  codec: CodecPool
  registry: Registry
  /** @default a pool the store creates from `init.clients` and stops on stop() */
  clients?: NodeClientPool
  /** @default silentLogger() */
  logger?: Logger
}

type BadShardListener = (report: BadShardReport) => void

/** Most chunks one coalesced fetch asks for (k+m shards each, spread over the members). */
const FETCH_CHUNKS_MAX = 64

/**
 * Coalesced fetches in flight at once. Reads that miss while this many are out wait in the
 * queue and leave together when one finishes: an NBD client's steady stream of small reads
 * (one per event-loop turn once its queue is full) then costs one request per node per
 * batch instead of per read. Per-call gRPC work on both ends was most of a cold read's CPU.
 */
const FETCHES_IN_FLIGHT_MAX = 2

export class ErasureChunkStore implements ChunkStore, Startable {
  readonly #policy: ChunkPolicy
  readonly #total: number
  readonly #quorum: number
  readonly #waveBytesMax: number
  readonly #pageBytesMax: number
  readonly #maps: ClusterMapProvider
  readonly #codec: CodecPool
  readonly #clients: NodeClientPool
  readonly #ownsClients: boolean
  readonly #logger: Logger
  readonly #metrics: ChunkStoreMetrics
  readonly #cache: ByteLru<Uint8Array>
  readonly #budget: ByteBudget
  readonly #fetcher: ChunkFetcher
  readonly #inflightReads = new Map<string, Promise<Uint8Array>>()
  readonly #settlers = new Map<string, { resolve(b: Uint8Array): void; reject(e: unknown): void }>()
  /**
   * Chunks waiting to be fetched: concurrent reads (an NBD client's queue of small reads)
   * share one fetch, so each storage node gets one request for all of them instead of one
   * per read. Drained at the end of the event-loop turn, at most FETCHES_IN_FLIGHT_MAX
   * fetches at a time; bounded by the callers' own bounds (the NBD in-flight limit).
   */
  #fetchQueue: CID[] = []
  #fetchScheduled = false
  #fetchesInFlight = 0
  readonly #listeners = new Set<BadShardListener>()
  readonly #active = new Set<Promise<unknown>>()
  readonly #zeros: Uint8Array
  #state: 'new' | 'running' | 'stopped' = 'new'

  /** Chunk bytes of puts holding the in-flight budget now (bounded by inFlightPutBytesMax, or one wave beyond when alone). */
  get inFlightPutBytes(): number {
    return this.#budget.usedBytes
  }

  constructor(init: ChunkStoreInit, components: ChunkStoreComponents) {
    this.#policy = validatePolicy(init.policy)
    const { dataShards: k, parityShards: m } = this.#policy
    this.#total = k + m
    this.#quorum = init.writeQuorumShards ?? k
    if (!Number.isInteger(this.#quorum) || this.#quorum < k || this.#quorum > this.#total) {
      throw new InvalidArgumentError(`writeQuorumShards must be an integer in [${k}, ${this.#total}], got ${this.#quorum}`)
    }
    this.#waveBytesMax = init.putWaveBytesMax ?? 16 * 1024 * 1024
    this.#pageBytesMax = init.pageChunkBytesMax ?? 1024 * 1024
    for (const [name, v] of Object.entries({ putWaveBytesMax: this.#waveBytesMax, pageChunkBytesMax: this.#pageBytesMax })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${v}`)
    }
    this.#maps = components.maps
    this.#codec = components.codec
    this.#ownsClients = components.clients === undefined
    this.#clients = components.clients ?? createNodeClientPool(init.clients)
    this.#logger = components.logger ?? silentLogger()
    this.#metrics = createChunkStoreMetrics(components.registry)
    this.#cache = new ByteLru<Uint8Array>({ maxBytes: init.cacheMaxBytes ?? CHUNK_STORE_MEMORY_DEFAULTS.cacheMaxBytes, sizeOf: (b) => b.byteLength })
    this.#budget = new ByteBudget(init.inFlightPutBytesMax ?? CHUNK_STORE_MEMORY_DEFAULTS.inFlightPutBytesMax)
    this.#zeros = new Uint8Array(this.#policy.chunkSizeBytes)
    this.#fetcher = new ChunkFetcher({
      dataShards: k,
      parityShards: m,
      clients: this.#clients,
      codec: this.#codec,
      logger: this.#logger,
      currentMap: () => this.#maps.current(),
      olderMaps: () => this.#maps.history?.() ?? [],
      report: (r) => this.#reportBadShard(r),
      degraded: () => this.#metrics.degradedReads.inc(),
    })
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return
    await this.#clients.start()
    this.#state = 'running'
  }

  /** Refuses new calls, lets calls in progress finish (each is bounded by request deadlines), then closes its own clients. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return
    this.#state = 'stopped'
    this.#budget.rejectWaiters()
    await Promise.allSettled([...this.#active])
    if (this.#ownsClients) await this.#clients.stop()
    this.#cache.clear()
  }

  /**
   * Subscribes to every shard a read found missing, corrupt, mismatched or on an
   * unreachable node (repair uses this). @returns a function that unsubscribes
   */
  onBadShard(listener: BadShardListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** Drops cached chunks (tests, and memory pressure). */
  clearCache(): void {
    this.#cache.clear()
    this.#metrics.cacheBytes.set(0)
  }

  async putChunks(chunks: readonly Uint8Array[], codec: ChunkCodec): Promise<CID[]> {
    return this.#track(async () => {
      const multicodec = this.#validatePut(chunks, codec)
      const endTimer = this.#metrics.putSeconds.startTimer()
      try {
        const waves = cutByBytes(chunks, this.#waveBytesMax)
        const results = await Promise.all(waves.map((wave) => this.#putWave(wave, multicodec)))
        return results.flat()
      } finally {
        endTimer()
      }
    })
  }

  async getChunks(cids: readonly CID[]): Promise<Uint8Array[]> {
    return this.#track(async () => {
      const keys = this.#validateGet(cids)
      const endTimer = this.#metrics.getSeconds.startTimer()
      const waits = new Map<string, Promise<Uint8Array>>()
      const toFetch: CID[] = []
      keys.forEach((key, i) => {
        if (waits.has(key)) return
        const cached = this.#cache.get(key)
        if (cached !== undefined) {
          this.#metrics.cacheHits.inc()
          waits.set(key, Promise.resolve(cached))
          return
        }
        // One fetch in flight per CID: later readers wait for the first one's result.
        let inflight = this.#inflightReads.get(key)
        if (inflight === undefined) {
          this.#metrics.cacheMisses.inc()
          toFetch.push(cids[i] as CID)
          inflight = this.#startFetch(key)
        }
        waits.set(key, inflight)
      })
      if (toFetch.length > 0) this.#queueFetch(toFetch)
      const settled = await Promise.all(keys.map((key) => waits.get(key) as Promise<Uint8Array>))
      endTimer()
      let bytes = 0
      for (const b of settled) bytes += b.byteLength
      this.#metrics.chunkGets.inc(settled.length)
      this.#metrics.chunkGetBytes.inc(bytes)
      // Shared with the cache, not copied (ChunkStore.getChunks): a 4 KiB read would otherwise copy the whole chunk.
      return settled
    })
  }

  // ---------------------------------------------------------------- reads

  #startFetch(key: string): Promise<Uint8Array> {
    const promise = new Promise<Uint8Array>((resolve, reject) => this.#settlers.set(key, { resolve, reject }))
    // A coalesced waiter may give up early (its call failed on another chunk); the rejection is still handled.
    promise.catch(() => {})
    this.#inflightReads.set(key, promise)
    return promise
  }

  #queueFetch(cids: readonly CID[]): void {
    for (const cid of cids) this.#fetchQueue.push(cid)
    this.#schedulePump()
  }

  /** Pumps at the end of this turn, so every read of the turn joins the same fetch. */
  #schedulePump(): void {
    if (this.#fetchScheduled) return
    this.#fetchScheduled = true
    setImmediate(() => {
      this.#fetchScheduled = false
      this.#pumpFetches()
    })
  }

  #pumpFetches(): void {
    while (this.#fetchesInFlight < FETCHES_IN_FLIGHT_MAX && this.#fetchQueue.length > 0) {
      const batch = this.#fetchQueue.splice(0, FETCH_CHUNKS_MAX)
      this.#fetchesInFlight += 1
      void this.#fetchAndSettle(batch).finally(() => {
        this.#fetchesInFlight -= 1
        if (this.#fetchQueue.length > 0) this.#schedulePump()
      })
    }
  }

  async #fetchAndSettle(cids: CID[]): Promise<void> {
    let outcome: Map<string, Uint8Array | CairnError>
    try {
      outcome = await this.#fetcher.fetch(cids)
    } catch (err) {
      outcome = new Map(cids.map((c) => [cidKey(c), err instanceof CairnError ? err : new ChunkUnavailableError(c.toString(), 'unavailable', 'chunk fetch failed', { cause: err })]))
    }
    for (const cid of cids) {
      const key = cidKey(cid)
      const settler = this.#settlers.get(key)
      this.#settlers.delete(key)
      this.#inflightReads.delete(key)
      const result = outcome.get(key)
      assert(settler !== undefined && result !== undefined, `fetch of ${cid.toString()} has no settler or no result`)
      if (result instanceof Uint8Array) {
        this.#cache.set(key, result)
        settler.resolve(result)
      } else {
        settler.reject(result)
      }
    }
    this.#metrics.cacheBytes.set(this.#cache.sizeBytes)
  }

  #reportBadShard(report: BadShardReport): void {
    this.#metrics.badShards.inc({ reason: report.reason })
    const log = { cid: report.cid.toString(), shardIndex: report.index, member: report.memberId, address: report.address, reason: report.reason, err: report.error }
    if (report.reason === 'unreachable') this.#logger.warn(log, 'shard on an unreachable node')
    else this.#logger.error(log, 'bad shard found while reading a chunk')
    for (const listener of this.#listeners) {
      try {
        listener(report)
      } catch (err) {
        this.#logger.error({ err }, 'onBadShard listener threw')
      }
    }
  }

  // ---------------------------------------------------------------- writes

  async #putWave(chunks: readonly Uint8Array[], multicodec: number): Promise<CID[]> {
    const waveBytes = chunks.reduce((n, c) => n + c.byteLength, 0)
    const taken = await this.#budget.acquire(waveBytes)
    this.#metrics.inFlightPutBytes.set(this.#budget.usedBytes)
    try {
      if (this.#state !== 'running') throw new ShuttingDownError('chunk store stopped')
      const encoded = await this.#encode(chunks, multicodec)
      const cids = encoded.map((e) => CID.decode(e.cid))
      const unique = new Map<string, { cid: CID; encoded: EncodedChunk }>()
      encoded.forEach((e, i) => unique.set(cidKey(cids[i] as CID), { cid: cids[i] as CID, encoded: e }))
      const durable = await this.#sendShards([...unique.values()])
      this.#checkQuorum(unique, durable)
      this.#metrics.chunkPuts.inc(unique.size)
      this.#metrics.chunkPutBytes.inc(waveBytes)
      return cids
    } finally {
      this.#budget.release(taken)
      this.#metrics.inFlightPutBytes.set(this.#budget.usedBytes)
    }
  }

  /** Packs the chunks into one fresh buffer and transfers it to a worker: the caller's buffers stay untouched. */
  async #encode(chunks: readonly Uint8Array[], multicodec: number): Promise<EncodedChunk[]> {
    const packed = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0))
    let offset = 0
    const views = chunks.map((c) => {
      packed.set(c, offset)
      const view = packed.subarray(offset, offset + c.byteLength)
      offset += c.byteLength
      return view
    })
    const { dataShards, parityShards, hash } = this.#policy
    const encoded = await this.#codec.encode({ dataShards, parityShards, hash, codec: multicodec, chunks: views }, { transfer: true })
    assert(encoded.length === chunks.length, 'codec pool returned the wrong number of chunks')
    for (const e of encoded) assert(e.shards.length === this.#total, 'codec pool returned the wrong number of shards')
    return encoded
  }

  /**
   * Places and sends every shard: one put per member (split at its batch limits),
   * all members in parallel. @returns durable shard count per chunk key
   */
  async #sendShards(chunks: { cid: CID; encoded: EncodedChunk }[]): Promise<Map<string, number>> {
    const map = this.#maps.current()
    const byMember = new Map<string, { member: ClusterMember; shards: Shard[]; keys: string[] }>()
    for (const { cid, encoded } of chunks) {
      const members = place(cid.bytes, this.#total, placementView(map))
      encoded.shards.forEach((payload, index) => {
        const member = members[index] as ClusterMember
        const shard = encodeShard({ chunkCid: encoded.cid, k: this.#policy.dataShards, m: this.#policy.parityShards, index, chunkLengthBytes: encoded.chunkLengthBytes, payload })
        const entry = byMember.get(member.id) ?? { member, shards: [], keys: [] }
        entry.shards.push(shard)
        entry.keys.push(cidKey(cid))
        byMember.set(member.id, entry)
      })
    }
    const durable = new Map<string, number>(chunks.map((c) => [cidKey(c.cid), 0]))
    const rejected: { member: ClusterMember; err: unknown }[] = []
    const sends = [...byMember.values()].flatMap(({ member, shards, keys }) =>
      this.#batches(shards).map(async ({ from, to }) => {
        try {
          await this.#putWithDeadline(member, shards.slice(from, to))
          for (let i = from; i < to; i++) durable.set(keys[i] as string, (durable.get(keys[i] as string) as number) + 1)
        } catch (err) {
          if (isUnreachable(err)) this.#logger.warn({ err, member: member.id, shards: to - from }, 'storage node unreachable during put')
          else rejected.push({ member, err })
        }
      }),
    )
    await Promise.all(sends)
    const first = rejected[0]
    if (first !== undefined) {
      const kind = first.err instanceof CairnError ? first.err.kind : 'internal'
      throw new ChunkWriteRejectedError(`storage node ${first.member.id} refused a put batch`, { cause: first.err, kind })
    }
    return durable
  }

  /** Shard ranges [from, to) that fit the node's batch limits. */
  #batches(shards: readonly Shard[]): { from: number; to: number }[] {
    const out: { from: number; to: number }[] = []
    let from = 0
    let bytes = 0
    shards.forEach((s, i) => {
      const full = i - from >= this.#clients.batchShardsMax || (i > from && bytes + s.bytes.byteLength > this.#clients.batchBytesMax)
      if (full) {
        out.push({ from, to: i })
        from = i
        bytes = 0
      }
      bytes += s.bytes.byteLength
    })
    if (from < shards.length) out.push({ from, to: shards.length })
    return out
  }

  /** A put stream carries no deadline of its own, so the wait for its acknowledgement is bounded here. */
  async #putWithDeadline(member: ClusterMember, shards: Shard[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NodeDeadlineError(`storage node ${member.id} did not acknowledge a put within ${this.#clients.requestDeadlineMs} ms`)), this.#clients.requestDeadlineMs)
    })
    try {
      await Promise.race([this.#clients.client(member).putShards(shards), deadline])
    } finally {
      clearTimeout(timer)
    }
  }

  #checkQuorum(unique: Map<string, { cid: CID }>, durable: Map<string, number>): void {
    for (const [key, count] of durable) {
      if (count < this.#quorum) {
        throw new ChunkWriteError(`chunk ${String(unique.get(key)?.cid)}: ${count} of ${this.#total} shards durable, ${this.#quorum} needed (storage nodes unreachable)`)
      }
    }
    for (const [key, count] of durable) {
      if (count === this.#total) continue
      // Readable now, but with less redundancy than the policy promises until repair completes it.
      this.#metrics.degradedWrites.inc()
      this.#logger.warn({ cid: String(unique.get(key)?.cid), durableShards: count, totalShards: this.#total }, 'chunk written degraded; needs repair')
    }
    assert(durable.size === unique.size, 'every placed chunk has a durable count')
  }

  // ---------------------------------------------------------------- validation

  #validatePut(chunks: readonly Uint8Array[], codec: ChunkCodec): number {
    this.#checkRunning()
    if (codec !== 'raw' && codec !== 'dag-cbor') throw new InvalidArgumentError(`unknown chunk codec ${JSON.stringify(codec)}`)
    if (!Array.isArray(chunks)) throw new InvalidArgumentError('chunks must be an array')
    const maxBytes = codec === 'raw' ? this.#policy.chunkSizeBytes : this.#pageBytesMax
    chunks.forEach((c, i) => {
      if (!(c instanceof Uint8Array)) throw new InvalidArgumentError(`chunk ${i} is not a Uint8Array`)
      if (c.byteLength === 0 || c.byteLength > maxBytes) throw new InvalidArgumentError(`chunk ${i} is ${c.byteLength} bytes; ${codec} chunks are 1..${maxBytes}`)
      // All-zero data is never stored (the manifest holds no entry); storing it is a caller bug.
      if (codec === 'raw' && Buffer.compare(c, this.#zeros.subarray(0, c.byteLength)) === 0) throw new InvalidArgumentError(`chunk ${i} is all zeros; zero chunks are never stored`)
    })
    return codec === 'raw' ? RAW_CODEC : DAG_CBOR_CODE
  }

  #validateGet(cids: readonly CID[]): string[] {
    this.#checkRunning()
    if (!Array.isArray(cids)) throw new InvalidArgumentError('cids must be an array')
    return cids.map((c, i) => {
      const cid = CID.asCID(c)
      if (cid === null || cid.version !== 1) throw new InvalidArgumentError(`cid ${i} is not a CIDv1`)
      if (cid.code !== RAW_CODEC && cid.code !== DAG_CBOR_CODE) throw new InvalidArgumentError(`cid ${i} has codec 0x${cid.code.toString(16)}, not raw or dag-cbor`)
      cidHash(cid)
      return cidKey(cid)
    })
  }

  #checkRunning(): void {
    if (this.#state !== 'running') throw new ShuttingDownError(`chunk store is ${this.#state === 'new' ? 'not started' : 'stopped'}`)
  }

  async #track<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn()
    this.#active.add(p)
    try {
      return await p
    } finally {
      this.#active.delete(p)
    }
  }
}

function validatePolicy(policy: ChunkPolicy): ChunkPolicy {
  const { dataShards: k, parityShards: m, chunkSizeBytes, hash } = policy
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > 32) {
    throw new InvalidArgumentError(`policy needs integers k >= 1, m >= 0, k+m <= 32; got ${k}+${m}`)
  }
  if (!Number.isSafeInteger(chunkSizeBytes) || chunkSizeBytes < 1) throw new InvalidArgumentError(`chunkSizeBytes must be a positive integer, got ${chunkSizeBytes}`)
  if (hash !== 'sha2-256' && hash !== 'blake3') throw new InvalidArgumentError(`unsupported chunk hash ${JSON.stringify(hash)}`)
  return { dataShards: k, parityShards: m, chunkSizeBytes, hash }
}

/** Consecutive runs of chunks of at most `maxBytes` each (a single larger chunk gets a run of its own). */
function cutByBytes(chunks: readonly Uint8Array[], maxBytes: number): Uint8Array[][] {
  const out: Uint8Array[][] = []
  let run: Uint8Array[] = []
  let bytes = 0
  for (const c of chunks) {
    if (run.length > 0 && bytes + c.byteLength > maxBytes) {
      out.push(run)
      run = []
      bytes = 0
    }
    run.push(c)
    bytes += c.byteLength
  }
  if (run.length > 0) out.push(run)
  return out
}

