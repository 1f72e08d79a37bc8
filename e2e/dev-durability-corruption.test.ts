/**
 * Bit rot on real storage-node processes: a `cairn dev` (2+1 on 3 storage nodes)
 * holds seeded data; about 1% of the stored shards (at least a handful, never two of
 * one chunk, picked with a fixed seed) get one random byte flipped in the nodes'
 * segment files while the nodes run. Then:
 * - scrub finds every one: the scrub counters (metric and Stats) equal the damage
 *   done, node by node, and nothing else is reported bad;
 * - reads through NBD, while the damage is on disk and while repair runs, return
 *   exactly the written data (the engine's cache is cold after the restart);
 * - repair rewrites every one: the census reads every shard back through each node's
 *   ShardService, every chunk has k+m healthy shards on its placement, and no node
 *   has a shard flagged corrupt any more.
 * A second round damages shards again and reads them at once with a cold engine, so
 * the reader meets rot nobody has flagged yet (and falls back to parity); it too is
 * found and rebuilt.
 *
 * Scrub runs every second and repair waits (1 h interval, after the pass it runs at
 * start) until the damage is found, so scrub is the one that finds it: a repair pass
 * reads one local shard per chunk and would otherwise race it. Repair is then
 * brought in by restarting `cairn dev` with a 1 s repair interval.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { runOk } from '../engine/nbd/testing.js'
import type { DevState } from '../cli/commands/dev/state.js'
import { seededRandom } from '../core/seeded-random.js'
import { Dev, nbdshEnv, waitUntil } from './harness.js'
import {
  chunksOf,
  checkRegion,
  counts,
  flipShardBytes,
  healthyShards,
  K,
  M,
  nodeStats,
  nodesMetric,
  readShards,
  serving,
  waitFlushed,
  waitPlaced,
  writeRegion,
  type ShardOnDisk,
} from './dev-durability-support.js'

const SEED = 0x5eed_0601
const MIB_WRITTEN = 6
const CHUNKS_WRITTEN = (MIB_WRITTEN * 1024 * 1024) / 65536
/** At least this many shards are damaged, whatever 1% comes to. */
const DAMAGED_MIN = 6
const NODE_ARGS = ['--storage-nodes', '3', '--member-down-timeout', '10m', '--scrub-interval', '1s']

/** Picks ~1% of `held`'s shards, at most one per chunk (2+1 survives one bad shard per chunk, not two). */
function pickDamage(held: Map<string, Set<string>>, random: () => number): Map<string, string[]> {
  const all = [...held.entries()].flatMap(([nodeId, keys]) => [...keys].sort().map((key) => ({ nodeId, key })))
  all.sort((a, b) => (a.key === b.key ? a.nodeId.localeCompare(b.nodeId) : a.key < b.key ? -1 : 1))
  const wanted = Math.max(DAMAGED_MIN, Math.ceil(all.length / 100))
  const chunksTaken = new Set<string>()
  const picked = new Map<string, string[]>()
  let count = 0
  while (count < wanted) {
    const { nodeId, key } = all[Math.floor(random() * all.length)] as { nodeId: string; key: string }
    const chunk = key.slice(0, key.indexOf('/'))
    if (chunksTaken.has(chunk)) continue
    chunksTaken.add(chunk)
    picked.set(nodeId, [...(picked.get(nodeId) ?? []), key])
    count++
  }
  return picked
}

/** Flips a random byte in ~1% of `held`'s shards (one per chunk at most), on the running nodes. */
async function damage(state: DevState, held: Map<string, Set<string>>, random: () => number): Promise<{ picked: Map<string, string[]>; damaged: ShardOnDisk[] }> {
  const picked = pickDamage(held, random)
  const damaged: ShardOnDisk[] = []
  for (const node of state.nodes) {
    const keys = picked.get(node.id) ?? []
    if (keys.length === 0) continue
    const shards = await readShards(node, keys)
    await flipShardBytes(node.dataDir, shards, random)
    damaged.push(...shards)
  }
  return { picked, damaged }
}

describe('cairn dev durability: 1% of shards rotted on disk are found by scrub and rebuilt by repair', () => {
  let dev: Dev
  const devs: Dev[] = []

  before(async () => {
    dev = await Dev.start({ size: '64MiB', dataShards: K, parityShards: M, extraArgs: [...NODE_ARGS, '--repair-interval', '1h'] })
    devs.push(dev)
  })
  after(async () => {
    for (const d of devs) await d.kill()
    await dev?.destroy()
  })

  test(`random bytes flipped in ~1% of the shard records (seed ${SEED}): scrub reports each, reads stay exact, repair rewrites each`, async (t) => {
    try {
      await runOk('nbdsh', ['-u', dev.uri, '-c', writeRegion(SEED, 0, MIB_WRITTEN)], 120_000, nbdshEnv)
      await waitFlushed(dev, CHUNKS_WRITTEN)
      const state = await dev.state()
      const nodes = serving(state, [])
      const held = await healthyShards(nodes)
      const chunks = chunksOf(held)
      assert.ok(chunks.size >= CHUNKS_WRITTEN, `${chunks.size} chunks stored`)
      const scrubBadBefore = await nodeStats(nodes)

      const { picked, damaged } = await damage(state, held, seededRandom(SEED))
      const total = [...held.values()].reduce((n, s) => n + s.size, 0)
      assert.ok(damaged.length >= DAMAGED_MIN && damaged.length >= total / 100, `${damaged.length} of ${total} shards damaged`)
      t.diagnostic(`damaged ${damaged.length} of ${total} shards: ${damaged.map((d) => `${d.key}@${d.nodeId}`).join(', ')}`)

      // Scrub finds every one, on the node that holds it, and nothing else.
      const expected = new Map(state.nodes.map((n) => [n.id, picked.get(n.id)?.length ?? 0]))
      await waitUntil(
        async () => (await nodesMetric(state.nodes, 'cairn_scrub_bad_shards_total')) >= damaged.length,
        120_000,
        `scrub to find the ${damaged.length} damaged shards`,
        250,
      )
      // One more completed pass on every node, so a false report would have had its chance.
      const passes = new Map([...(await nodeStats(nodes))].map(([id, s]) => [id, s.scrub?.passesCompleted ?? 0]))
      await waitUntil(async () => [...(await nodeStats(nodes))].every(([id, s]) => (s.scrub?.passesCompleted ?? 0) > (passes.get(id) ?? 0)), 120_000, 'another scrub pass on every node', 250)
      const stats = await nodeStats(nodes)
      for (const node of state.nodes) {
        const s = stats.get(node.id)
        const found = (s?.scrub?.badShards ?? 0) - (scrubBadBefore.get(node.id)?.scrub?.badShards ?? 0)
        assert.equal(found, expected.get(node.id), `scrub on ${node.id} reports the shards damaged there`)
        assert.equal(s?.corruptShardCount, expected.get(node.id), `${node.id} holds exactly the damaged shards flagged corrupt`)
      }
      assert.equal(await nodesMetric(state.nodes, 'cairn_scrub_bad_shards_total'), damaged.length, 'cairn_scrub_bad_shards_total over the nodes')
      assert.equal(await nodesMetric(state.nodes, 'cairn_storage_node_bad_shards_found_total'), damaged.length, 'no read found any other bad shard')
      const stillHealthy = await healthyShards(nodes)
      for (const shard of damaged) assert.ok(!stillHealthy.get(shard.nodeId)?.has(shard.key), `${shard.key} is no longer served by ${shard.nodeId}`)

      // Repair: restart dev with a short repair interval. Reads run while it works (cold engine cache: every read goes to the shards).
      assert.equal(await dev.stop(), 0, 'cairn dev exits 0 on SIGTERM')
      dev = await Dev.start({ dataDir: dev.dataDir, port: dev.port, size: '64MiB', dataShards: K, parityShards: M, extraArgs: [...NODE_ARGS, '--repair-interval', '1s'] })
      devs.push(dev)
      const during = runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(SEED, 0, MIB_WRITTEN)], 180_000, nbdshEnv)
      const restarted = serving(await dev.state(), [])
      await waitPlaced(dev, chunks, restarted)
      assert.deepEqual(counts(await during), { ok: MIB_WRITTEN, err: 0, bad: 0 }, 'reads while repair runs')
      const repaired = await nodeStats(restarted)
      for (const [id, s] of repaired) assert.equal(s.corruptShardCount, 0, `${id} has no shard flagged corrupt after repair`)
      const rebuilt = [...repaired.values()].reduce((n, s) => n + (s.repair?.repairedShards ?? 0), 0)
      assert.ok(rebuilt >= damaged.length, `repair counted ${rebuilt} rebuilt shards for ${damaged.length} damaged`)
      t.diagnostic(`repair rebuilt ${rebuilt} shards for ${damaged.length} damaged`)
      const census = await healthyShards(restarted)
      for (const shard of damaged) assert.ok(census.get(shard.nodeId)?.has(shard.key), `${shard.key} is healthy again on ${shard.nodeId}`)
      assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(SEED, 0, MIB_WRITTEN)], 120_000, nbdshEnv)), { ok: MIB_WRITTEN, err: 0, bad: 0 }, 'reads after repair')

      // Second round: rot that a reader meets before scrub or repair flag it. A cold engine reads every data shard and must fall back to parity.
      const state2 = await dev.state()
      const foundBefore = await nodesMetric(state2.nodes, 'cairn_storage_node_bad_shards_found_total')
      const second = (await damage(state2, census, seededRandom(SEED + 1))).damaged
      await dev.killEngine()
      assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(SEED, 0, MIB_WRITTEN)], 120_000, nbdshEnv)), { ok: MIB_WRITTEN, err: 0, bad: 0 }, 'cold reads over unflagged rot')
      await waitUntil(async () => (await nodesMetric(state2.nodes, 'cairn_storage_node_bad_shards_found_total')) - foundBefore >= second.length, 120_000, 'the second round of rot to be found', 250)
      await waitPlaced(dev, chunks, restarted)
      const census2 = await healthyShards(restarted)
      for (const shard of second) assert.ok(census2.get(shard.nodeId)?.has(shard.key), `${shard.key} is healthy again on ${shard.nodeId} (second round)`)
      t.diagnostic(`second round: ${second.length} shards damaged under a cold engine, all found and rebuilt`)
    } catch (err) {
      throw new Error(`corruption test failed (seed ${SEED}): ${(err as Error).message}`, { cause: err })
    }
  })
})
