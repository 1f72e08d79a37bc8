/**
 * TEST SUPPORT, not production code: an in-process cluster of real segment
 * stores in temporary directories, a `PeerShards`/`PeerLiveness` over them
 * (what the libp2p mesh provides between processes), and helpers that write
 * chunks exactly as the engine does and check every shard of every chunk.
 */
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import type { ClusterMap, ClusterMapProvider, ClusterMember } from '../../core/cluster-map.js'
import { CairnError } from '../../core/errors.js'
import { silentLogger } from '../../core/logger.js'
import { place } from '../../core/placement.js'
import { encodeShard, type Shard, type ShardAddress } from '../../core/shard.js'
import { createCodecJobRunner } from '../../core/workers/codec-jobs.js'
import { fillSeeded } from '../../core/seeded-random.js'
import type { PeerCallOptions, PeerLiveness, PeerShards } from '../mesh/types.js'
import { createSegmentShardStore, type SegmentShardStore } from '../segment-store.js'
import type { GetResult } from '../shard-store.js'
import { throwIfAborted, type PaceClock } from '../scrub/pacing.js'
import { Repairer, type RepairerComponents, type RepairerInit } from './repairer.js'

/** A clock whose sleep advances time instantly: pace is measured, never waited for. */
export function fakeClock(): PaceClock & { now: number; slept: number } {
  const clock = {
    now: 0,
    slept: 0,
    nowMs: () => clock.now,
    async sleep(ms: number, signal?: AbortSignal) {
      throwIfAborted(signal)
      clock.now += ms
      clock.slept += ms
    },
  }
  return clock
}

/** The member is down or unknown (what the mesh raises). */
export class PeerUnreachableError extends CairnError {
  override readonly name = 'PeerUnreachableError'
  readonly kind = 'unavailable'
}

export interface Transfer {
  kind: 'get' | 'put'
  member: string
  bytes: number
}

/** Peers in this process: every call goes straight to the member's store. */
export class InProcessPeers implements PeerShards, PeerLiveness {
  /** Members that refuse every call and report not alive. */
  readonly down = new Set<string>()
  readonly transfers: Transfer[] = []
  /** Called before each call is served (tests abort passes from here). */
  beforeCall: ((kind: 'has' | 'get' | 'put', member: string) => void) | undefined

  constructor(private readonly stores: Map<string, SegmentShardStore>) {}

  #store(member: string, kind: 'has' | 'get' | 'put', options?: PeerCallOptions): SegmentShardStore {
    this.beforeCall?.(kind, member)
    options?.signal?.throwIfAborted()
    const store = this.stores.get(member)
    if (store === undefined || this.down.has(member)) throw new PeerUnreachableError(`member ${member} is unreachable`)
    return store
  }

  async has(member: string, addresses: readonly ShardAddress[], options?: PeerCallOptions): Promise<boolean[]> {
    return this.#store(member, 'has', options).hasShards(addresses)
  }

  async get(member: string, addresses: readonly ShardAddress[], options?: PeerCallOptions): Promise<GetResult[]> {
    const results = await this.#store(member, 'get', options).getShards(addresses)
    for (const r of results) if (r.ok) this.transfers.push({ kind: 'get', member, bytes: r.shard.bytes.byteLength })
    return results
  }

  async put(member: string, shards: readonly Shard[], options?: PeerCallOptions): Promise<void> {
    const store = this.#store(member, 'put', options)
    await store.putShards(shards)
    this.transfers.push({ kind: 'put', member, bytes: shards.reduce((n, s) => n + s.bytes.byteLength, 0) })
  }

  isAlive(member: string): boolean {
    return this.stores.has(member) && !this.down.has(member)
  }

  silentForMs(member: string): number | undefined {
    return this.isAlive(member) ? 0 : undefined
  }
}

export function testMember(id: string): ClusterMember {
  const port = 10_000 + Number(id.replace(/\D/g, '') || 0)
  return { id, address: `127.0.0.1:${port}`, peerId: `peer-${id}`, failureDomain: `domain-${id}`, weight: 1, state: 'active' }
}

/** A mutable provider: tests publish a new map by assigning `map`. */
export class TestMaps implements ClusterMapProvider {
  readonly older: ClusterMap[] = []
  constructor(public map: ClusterMap) {}
  current(): ClusterMap {
    return this.map
  }
  history(): readonly ClusterMap[] {
    return this.older
  }
  /** Publishes the next epoch with these members; the current map joins the history. */
  publish(members: readonly ClusterMember[]): ClusterMap {
    this.older.push(this.map)
    this.map = { epoch: this.map.epoch + 1, members }
    return this.map
  }
}

export interface TestCluster {
  dir: string
  stores: Map<string, SegmentShardStore>
  peers: InProcessPeers
  maps: TestMaps
  registry(member: string): Registry
  /** Starts a store for a new member (not yet in the map). */
  addStore(member: string): Promise<SegmentShardStore>
  /** Stops a member's store and deletes its data: the node is gone for good. */
  destroyStore(member: string): Promise<void>
  stop(): Promise<void>
}

/** Members n0..n{count-1}, one failure domain each, weight 1; stores under a new directory in `parentDir`. */
export async function createTestCluster(memberCount: number, parentDir: string = tmpdir()): Promise<TestCluster> {
  const dir = await mkdtemp(join(parentDir, 'cairn-repair-'))
  const stores = new Map<string, SegmentShardStore>()
  const registries = new Map<string, Registry>()
  const addStore = async (member: string): Promise<SegmentShardStore> => {
    const store = createSegmentShardStore({ dataDir: join(dir, member), compactionIntervalMs: 0, segmentSizeBytes: 4 * 1024 * 1024 }, { logger: silentLogger() })
    await store.start()
    stores.set(member, store)
    return store
  }
  const ids = Array.from({ length: memberCount }, (_, i) => `n${i}`)
  for (const id of ids) await addStore(id)
  return {
    dir,
    stores,
    peers: new InProcessPeers(stores),
    maps: new TestMaps({ epoch: 1, members: ids.map(testMember) }),
    registry(member) {
      let r = registries.get(member)
      if (r === undefined) registries.set(member, (r = new Registry()))
      return r
    },
    addStore,
    async destroyStore(member) {
      await stores.get(member)?.stop()
      stores.delete(member)
      await rm(join(dir, member), { recursive: true, force: true })
    },
    async stop() {
      for (const s of stores.values()) await s.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Overwrites one byte of the stored record of `address` on disk (position and
 * value drawn from `random`), as bit rot would: the store's index still points
 * at the record, only its bytes changed.
 */
export async function corruptOnDisk(store: SegmentShardStore, address: ShardAddress, random: () => number): Promise<void> {
  store.flushIndex()
  const row = store.index.lookup(address)
  if (row === undefined) throw new Error('no such shard to corrupt')
  const segment = store.segments.get(row.segment)
  if (segment === undefined) throw new Error('segment not open')
  const at = row.offset + Math.floor(random() * row.length)
  const file = await open(segment.path, 'r+')
  try {
    const old = Buffer.alloc(1)
    await file.read(old, 0, 1, at)
    // XOR with a non-zero value: the byte always changes.
    const flipped = Buffer.from([(old[0] as number) ^ (1 + Math.floor(random() * 255))])
    await file.write(flipped, 0, 1, at)
  } finally {
    await file.close()
  }
}

/** A deterministic generator in [0, 1) (mulberry32), for seeded tests. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A chunk as written, with the exact bytes of each of its shards. */
export interface WrittenChunk {
  cid: Uint8Array
  shards: Shard[]
}

/** Seeded, non-zero chunks of `chunkBytes` each. */
export function seededChunks(count: number, chunkBytes: number, seed: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => fillSeeded(new Uint8Array(chunkBytes), seed * 1_000_003 + i + 1))
}

/** Encodes and places the chunks as the engine's writer does (same core functions, no member excluded) and puts each shard on its member. */
export async function writeChunks(cluster: TestCluster, chunks: readonly Uint8Array[], k: number, m: number): Promise<WrittenChunk[]> {
  const runner = await createCodecJobRunner('wasm-simd')
  const encoded = runner.run({ kind: 'encode', dataShards: k, parityShards: m, chunks: [...chunks] })
  const byMember = new Map<string, Shard[]>()
  const written = encoded.map((e) => {
    const members = place(e.cid, k + m, cluster.maps.current())
    const shards = e.shards.map((payload, index) => encodeShard({ chunkCid: e.cid, k, m, index, chunkLengthBytes: e.chunkLengthBytes, payload }))
    shards.forEach((s, i) => {
      const id = (members[i] as ClusterMember).id
      byMember.set(id, [...(byMember.get(id) ?? []), s])
    })
    return { cid: e.cid, shards }
  })
  for (const [member, shards] of byMember) await cluster.stores.get(member)?.putShards(shards)
  return written
}

export interface PlacementCheck {
  /** Shards read back verified and byte-identical from their current target. */
  healthy: number
  /** `cid#index@member` of shards missing, corrupt or different at their target. */
  bad: string[]
  /** `cid#index@member` of copies on a member that is not the shard's target. */
  misplaced: string[]
}

/** Reads every shard of every chunk from its target under the current map, and looks for copies anywhere else. */
export async function checkPlacement(cluster: TestCluster, written: readonly WrittenChunk[]): Promise<PlacementCheck> {
  const check: PlacementCheck = { healthy: 0, bad: [], misplaced: [] }
  const map = cluster.maps.current()
  for (const chunk of written) {
    const targets = place(chunk.cid, chunk.shards.length, map).map((member) => member.id)
    for (const shard of chunk.shards) {
      const index = shard.header.index
      const name = `${Buffer.from(chunk.cid).toString('hex').slice(-8)}#${index}`
      if (!cluster.stores.has(targets[index] as string)) check.bad.push(`${name}@${targets[index]} (no store)`)
      for (const [member, store] of cluster.stores) {
        const isTarget = member === targets[index]
        const [has] = await store.hasShards([{ chunkCid: chunk.cid, index }])
        if (!isTarget) {
          if (has === true) check.misplaced.push(`${name}@${member}`)
          continue
        }
        const got = await store.getShard({ chunkCid: chunk.cid, index }).catch(() => undefined)
        if (got !== undefined && Buffer.compare(got.bytes, shard.bytes) === 0) check.healthy += 1
        else check.bad.push(`${name}@${member}`)
      }
    }
  }
  return check
}

/** A repairer of `member` in `cluster`: unpaced, no interval, no settle, a checkpoint after every batch. */
export function repairerFor(cluster: TestCluster, member: string, init: Partial<RepairerInit> = {}, components: Partial<RepairerComponents> = {}): Repairer {
  return new Repairer(
    { bandwidthBytesPerSecond: Infinity, intervalMs: 0, stateDir: join(cluster.dir, `state-${member}`), settleMs: 0, checkpointIntervalMs: 0, ...init },
    {
      memberId: member,
      maps: cluster.maps,
      store: cluster.stores.get(member) as SegmentShardStore,
      peers: cluster.peers,
      liveness: cluster.peers,
      logger: silentLogger(),
      registry: cluster.registry(member),
      ...components,
    },
  )
}
