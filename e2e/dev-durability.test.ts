/**
 * Durability of a real `cairn dev` (2+1 on 4 storage-node processes with the libp2p
 * mesh, scrub and repair): a storage node lost for good (SIGKILL, data directory
 * deleted) is marked down after a short timeout and its shards are rebuilt on the
 * other members; `cairn node remove` does the same for a member taken out on purpose.
 * Every shard is checked by reading it through each node's ShardService, against
 * the placement the cluster map gives, and the volume reads back identical over NBD.
 */
import { describe, before, after, test } from 'node:test'
import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { runOk } from '../engine/nbd/testing.js'
import { ShardClient } from '../storage-node/shard-client.js'
import type { NodeStats } from '../storage-node/shard-store.js'
import { Dev, fetchText, nbdshEnv, waitUntil } from './harness.js'
import { chunksOf, checkRegion, clusterMap, counts, fault, healthyShards, K, M, serving, waitFlushed, waitPlaced, writeRegion } from './dev-durability-support.js'

const MIB_WRITTEN = 4
const CHUNKS_WRITTEN = (MIB_WRITTEN * 1024 * 1024) / 65536

describe('cairn dev durability: a lost or removed storage node is rebuilt elsewhere', () => {
  let dev: Dev

  before(async () => {
    dev = await Dev.start({
      size: '64MiB',
      dataShards: K,
      parityShards: M,
      extraArgs: ['--storage-nodes', '4', '--member-down-timeout', '3s', '--repair-interval', '1s', '--scrub-interval', '1h'],
    })
  })
  after(async () => {
    await dev?.destroy()
  })

  test('every node publishes its real peer id and mesh address, and reports them in Stats', async () => {
    const map = await clusterMap(dev)
    assert.equal(map.members.length, 4)
    for (const node of (await dev.state()).nodes) {
      const member = map.members.find((m) => m.id === node.id)
      assert.ok(member !== undefined, node.id)
      assert.match(member.peerId, /^12D3Koo/, 'an Ed25519 libp2p peer id')
      assert.equal(member.meshAddress, node.meshAddress)
      const client = new ShardClient({ address: node.address })
      const stats = (await client.stats().finally(() => client.close())) as NodeStats
      assert.equal(stats.peerId, member.peerId)
      assert.ok(stats.scrub !== undefined && stats.repair !== undefined, 'scrub and repair counters in Stats')
    }
  })

  test('SIGKILL plus a deleted data directory: after the down timeout every chunk has k+m healthy shards on the remaining members, and the volume reads back identical', async () => {
    await runOk('nbdsh', ['-u', dev.uri, '-c', writeRegion(7, 0, MIB_WRITTEN)], 120_000, nbdshEnv)
    await waitFlushed(dev, CHUNKS_WRITTEN)
    const state = await dev.state()
    const chunks = chunksOf(await healthyShards(serving(state, [])))
    assert.ok(chunks.size >= CHUNKS_WRITTEN, `${chunks.size} chunks stored`)
    const lost = state.nodes.find((n) => n.id === 'node-3')
    assert.ok(lost !== undefined)
    await fault(dev, 'node-3', 'kill')
    await rm(lost.dataDir, { recursive: true, force: true })
    await waitUntil(async () => (await clusterMap(dev)).members.find((m) => m.id === 'node-3')?.state === 'down', 60_000, 'node-3 to be marked down')
    const status = JSON.parse(await fetchText(`${state.statusUrl}status.json`)) as { members: Array<{ id: string; state: string }> }
    assert.equal(status.members.find((m) => m.id === 'node-3')?.state, 'down', 'the status page shows the member down')
    await waitPlaced(dev, chunks, serving(state, ['node-3']))
    assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(7, 0, MIB_WRITTEN)], 120_000, nbdshEnv)), { ok: MIB_WRITTEN, err: 0, bad: 0 })
  })

  test('cairn node remove: the member leaves the map, dev stops it, its shards are rebuilt on the rest', async () => {
    // node-3 is down (previous test); removing another would leave 2 serving nodes for k+m = 3: refused.
    const refused = await dev.cli(['node', 'remove', 'node-2', '--output', 'json'])
    assert.equal(refused.code, 1)
    assert.equal((JSON.parse(refused.stdout) as { error: { name: string } }).error.name, 'FailedPreconditionError')
    const unknown = await dev.cli(['node', 'remove', 'node-9', '--output', 'json'])
    assert.equal((JSON.parse(unknown.stdout) as { error: { name: string } }).error.name, 'UnknownMemberError')
    // Removing the lost node itself is allowed: the down member leaves the map for good.
    const removed = await dev.cli(['node', 'remove', 'node-3'])
    assert.equal(removed.code, 0, removed.stderr)
    const map = await clusterMap(dev)
    assert.deepEqual(map.members.map((m) => m.id).sort(), ['node-0', 'node-1', 'node-2'])
    await waitUntil(async () => !(await dev.state()).nodes.some((n) => n.id === 'node-3'), 30_000, 'dev to stop supervising node-3')
    const state = await dev.state()
    await waitPlaced(dev, chunksOf(await healthyShards(serving(state, []))), serving(state, []))
    assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(7, 0, MIB_WRITTEN)], 120_000, nbdshEnv)), { ok: MIB_WRITTEN, err: 0, bad: 0 })
  })
})
