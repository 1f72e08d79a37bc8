/**
 * What the dev-durability e2e tests share (test infrastructure): seeded NBD writes
 * and checks through nbdsh, waiting for the engine's flush, the cluster map as
 * `cairn node list` shows it, and the shard census: every shard each node holds,
 * read back through its ShardService, compared with the placement the map gives.
 */
import assert from 'node:assert/strict'
import { open, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { membersInStates, type ClusterMap } from '../core/cluster-map.js'
import { place } from '../core/placement.js'
import type { ShardAddress } from '../core/shard.js'
import { ShardClient } from '../storage-node/shard-client.js'
import type { NodeStats } from '../storage-node/shard-store.js'
import type { DevState } from '../cli/commands/dev/state.js'
import { Dev, fetchText, waitUntil } from './harness.js'
export { checkRegion, counts, fault, writeRegion } from './harness.js'

export const K = 2
export const M = 1

function metric(text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

/** Waits until the engine has turned every acknowledged write into chunks on the storage nodes. */
export async function waitFlushed(dev: Dev, chunksMin: number): Promise<void> {
  await waitUntil(
    async () => {
      const admin = (await dev.state()).engine.adminAddress
      if (admin === null) return false
      const text = await fetchText(`http://${admin}/metrics`)
      return metric(text, 'cairn_volume_dirty_bytes') === 0 && metric(text, 'cairn_volume_flushed_chunks_total') >= chunksMin
    },
    120_000,
    'the engine to flush every write into chunks',
    200,
  )
}

export async function clusterMap(dev: Dev): Promise<ClusterMap> {
  const out = await dev.cli(['node', 'list', '--output', 'json'])
  assert.equal(out.code, 0, out.stderr)
  const listed = JSON.parse(out.stdout) as {
    epoch: number
    nodes: Array<{ id: string; state: 'active' | 'down' | 'draining'; address: string; meshAddress: string | null; peerId: string; failureDomain?: string; weight?: number }>
  }
  return {
    epoch: listed.epoch,
    members: listed.nodes.map((n) => ({
      id: n.id,
      address: n.address,
      peerId: n.peerId,
      ...(n.meshAddress === null ? {} : { meshAddress: n.meshAddress }),
      failureDomain: n.failureDomain ?? n.id,
      weight: n.weight ?? 1,
      state: n.state,
    })),
  }
}

/** Every shard each serving node holds and can read (listed, then fetched: the store checks the CRC on get). */
export async function healthyShards(nodes: ReadonlyArray<{ id: string; address: string }>): Promise<Map<string, Set<string>>> {
  const held = new Map<string, Set<string>>()
  for (const node of nodes) {
    const client = new ShardClient({ address: node.address })
    try {
      const addresses = []
      let pageToken: string | undefined
      do {
        const page = await client.listShards({ pageSize: 512, ...(pageToken === undefined ? {} : { pageToken }) })
        addresses.push(...page.shards.filter((s) => !s.corrupt).map((s) => s.address))
        pageToken = page.nextPageToken
      } while (pageToken !== undefined)
      const keys = new Set<string>()
      for (let i = 0; i < addresses.length; i += 256) {
        const batch = addresses.slice(i, i + 256)
        const results = await client.getShards(batch)
        results.forEach((r, j) => {
          const a = batch[j] as (typeof batch)[number]
          if (r.ok) keys.add(shardKey(a.chunkCid, a.index))
        })
      }
      held.set(node.id, keys)
    } finally {
      client.close()
    }
  }
  return held
}

function shardKey(cid: Uint8Array, index: number): string {
  return `${CID.decode(cid).toString()}/${index}`
}

/**
 * Chunks (of `chunks`) that do not have all k+m shards, healthy, on the members the
 * current map places them on (down members left out, as for any write).
 */
export function misplaced(chunks: ReadonlySet<string>, map: ClusterMap, held: Map<string, Set<string>>): string[] {
  const exclude = membersInStates(map, ['down'])
  const bad: string[] = []
  for (const cid of chunks) {
    const targets = place(CID.parse(cid).bytes, K + M, map, { exclude })
    targets.forEach((member, index) => {
      if (held.get(member.id)?.has(`${cid}/${index}`) !== true) bad.push(`${cid}/${index}@${member.id}`)
    })
  }
  return bad
}

/** Copies (of `chunks`) held by a member that the current map does not place them on: old copies a rebalance must delete. */
export function strays(chunks: ReadonlySet<string>, map: ClusterMap, held: Map<string, Set<string>>): string[] {
  const exclude = membersInStates(map, ['down'])
  const placed = new Set<string>()
  for (const cid of chunks) place(CID.parse(cid).bytes, K + M, map, { exclude }).forEach((member, index) => placed.add(`${cid}/${index}@${member.id}`))
  const out: string[] = []
  for (const [nodeId, keys] of held) {
    for (const key of keys) if (chunks.has(key.slice(0, key.indexOf('/'))) && !placed.has(`${key}@${nodeId}`)) out.push(`${key}@${nodeId}`)
  }
  return out
}

export function chunksOf(held: Map<string, Set<string>>): Set<string> {
  const chunks = new Set<string>()
  for (const keys of held.values()) for (const key of keys) chunks.add(key.slice(0, key.indexOf('/')))
  return chunks
}

/** Waits until every chunk of `chunks` has k+m healthy shards on its placement; says what is missing if not. */
export async function waitPlaced(dev: Dev, chunks: ReadonlySet<string>, nodes: ReadonlyArray<{ id: string; address: string }>): Promise<void> {
  let lastMissing: string[] = []
  await waitUntil(
    async () => {
      lastMissing = misplaced(chunks, await clusterMap(dev), await healthyShards(nodes))
      return lastMissing.length === 0
    },
    240_000,
    'every chunk to have k+m healthy shards on its placement',
    1000,
  ).catch((err: unknown) => {
    const warnings = dev.lines.filter((l) => /"level":(40|50)/.test(l)).slice(-20)
    throw new Error(`${lastMissing.length} shards still missing, e.g. ${lastMissing.slice(0, 5).join(', ')}; last warnings:\n${warnings.join('\n')}`, { cause: err })
  })
}

export function serving(state: DevState, except: readonly string[]): Array<{ id: string; address: string }> {
  return state.nodes.filter((n) => !except.includes(n.id)).map((n) => ({ id: n.id, address: n.address }))
}


/** The sum of every sample of `name` in a Prometheus text page. */
export function metricSum(text: string, name: string): number {
  return metric(text, name)
}

/** The sum of `name` over the /metrics pages of `nodes`. */
export async function nodesMetric(nodes: ReadonlyArray<{ metricsAddress: string }>, name: string): Promise<number> {
  let sum = 0
  for (const node of nodes) sum += metric(await fetchText(`http://${node.metricsAddress}/metrics`), name)
  return sum
}

/** Each node's Stats (store counters plus scrub and repair), by node id. */
export async function nodeStats(nodes: ReadonlyArray<{ id: string; address: string }>): Promise<Map<string, NodeStats>> {
  const out = new Map<string, NodeStats>()
  for (const node of nodes) {
    const client = new ShardClient({ address: node.address })
    try {
      out.set(node.id, (await client.stats()) as NodeStats)
    } finally {
      client.close()
    }
  }
  return out
}

/** One shard to damage on disk: which node holds it, its address, and its encoded bytes as stored. */
export interface ShardOnDisk {
  nodeId: string
  key: string
  address: ShardAddress
  bytes: Uint8Array
}

/** Reads the encoded bytes of `keys` (`cid/index`) from `node`, as its store holds them. */
export async function readShards(node: { id: string; address: string }, keys: readonly string[]): Promise<ShardOnDisk[]> {
  const client = new ShardClient({ address: node.address })
  try {
    const addresses = keys.map((key) => {
      const slash = key.indexOf('/')
      return { chunkCid: CID.parse(key.slice(0, slash)).bytes, index: Number(key.slice(slash + 1)) }
    })
    const results = await client.getShards(addresses)
    return results.map((r, i) => {
      assert.ok(r.ok, `${keys[i]} on ${node.id} reads before it is damaged`)
      return { nodeId: node.id, key: keys[i] as string, address: addresses[i] as ShardAddress, bytes: r.shard.bytes }
    })
  } finally {
    client.close()
  }
}

/**
 * Flips one random byte (xor with a random non-zero mask) inside each shard's record
 * in the node's segment files, found by searching the files for the shard's encoded
 * bytes: the node's index is an exclusive SQLite database, and the record's bytes are
 * exactly what the store wrote. The running node reads the same page cache, so its
 * next read of the shard sees the damage. Returns the file offset damaged per shard.
 */
export async function flipShardBytes(nodeDataDir: string, shards: readonly ShardOnDisk[], random: () => number): Promise<number[]> {
  const dir = join(nodeDataDir, 'segments')
  const files = (await readdir(dir)).filter((f) => f.endsWith('.seg')).sort()
  const offsets: number[] = []
  for (const shard of shards) {
    let done = false
    for (const file of files) {
      const path = join(dir, file)
      const at = (await readFile(path)).indexOf(Buffer.from(shard.bytes))
      if (at < 0) continue
      const pos = at + Math.floor(random() * shard.bytes.byteLength)
      const fh = await open(path, 'r+')
      try {
        const one = Buffer.alloc(1)
        await fh.read(one, 0, 1, pos)
        one[0] = (one[0] as number) ^ (1 + Math.floor(random() * 255))
        await fh.write(one, 0, 1, pos)
      } finally {
        await fh.close()
      }
      offsets.push(pos)
      done = true
      break
    }
    assert.ok(done, `the record of ${shard.key} is in a segment file of ${shard.nodeId}`)
  }
  return offsets
}
