/**
 * What the dev-durability e2e tests share (test infrastructure): seeded NBD writes
 * and checks through nbdsh, waiting for the engine's flush, the cluster map as
 * `cairn node list` shows it, and the shard census: every shard each node holds,
 * read back through its ShardService, compared with the placement the map gives.
 */
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { membersInStates, type ClusterMap } from '../core/cluster-map.js'
import { place } from '../core/placement.js'
import { ShardClient } from '../storage-node/shard-client.js'
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
  const listed = JSON.parse(out.stdout) as { epoch: number; nodes: Array<{ id: string; state: 'active' | 'down' | 'draining'; address: string; meshAddress: string | null; peerId: string }> }
  return {
    epoch: listed.epoch,
    members: listed.nodes.map((n) => ({ id: n.id, address: n.address, peerId: n.peerId, ...(n.meshAddress === null ? {} : { meshAddress: n.meshAddress }), failureDomain: n.id, weight: 1, state: n.state })),
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

