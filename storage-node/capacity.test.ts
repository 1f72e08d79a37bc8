// Capacity allocation: the clamp rule, and a real storage node refusing puts
// past its allocation with CapacityExceededError while keeping what it stored.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { allocationBytes, freeBytes } from './capacity.js'
import { StorageNode, type StorageNodeInit } from './daemon.js'
import { fixtureShard, loopbackNodeInit } from './fixtures.js'
import { ShardClient } from './shard-client.js'

const GiB = 2 ** 30

describe('allocationBytes', () => {
  it('is fraction × available, clamped to [min, max], never above what is available', () => {
    const table: Array<[Parameters<typeof allocationBytes>[0], number, number]> = [
      [{ fraction: 0.8 }, 100 * GiB, 80 * GiB],
      [{ fraction: 1 }, 100 * GiB, 100 * GiB],
      [{ fraction: 0.5, maxBytes: 20 * GiB }, 100 * GiB, 20 * GiB],
      [{ fraction: 0.1, minBytes: 20 * GiB }, 100 * GiB, 20 * GiB],
      [{ fraction: 0.1, minBytes: 200 * GiB }, 100 * GiB, 100 * GiB], // a minimum the disk cannot hold is capped
      [{ fraction: 0.5, minBytes: 10, maxBytes: 10 }, 100 * GiB, 10],
      [{ fraction: 0.8 }, 0, 0],
      [{ fraction: 0.3 }, 10, 3], // floors to whole bytes
    ]
    for (const [rule, available, want] of table) assert.equal(allocationBytes(rule, available), want, JSON.stringify({ rule, available }))
  })

  it('refuses inconsistent rules with ConfigError', () => {
    assert.throws(() => allocationBytes({ fraction: 0 }, GiB), { name: 'ConfigError' })
    assert.throws(() => allocationBytes({ fraction: 1.5 }, GiB), { name: 'ConfigError' })
    assert.throws(() => allocationBytes({ fraction: 0.5, minBytes: 2, maxBytes: 1 }, GiB), { name: 'ConfigError' })
  })

  it('reads free space from statfs', async () => {
    const free = await freeBytes(tmpdir())
    assert.ok(Number.isSafeInteger(free) && free > 0)
  })
})

function nodeInit(dataDir: string, capacityMaxBytes: number): StorageNodeInit {
  return loopbackNodeInit(dataDir, { capacityFraction: 1, capacityMaxBytes })
}

describe('a storage node with an allocation', () => {
  it('refuses puts past it with CapacityExceededError, accepts re-puts and puts after deletes, and reports it in Stats and metrics', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-capacity-'))
    const shardBytes = fixtureShard(0, 0, 4096).bytes.byteLength
    const capacity = 10 * shardBytes + shardBytes / 2 // room for ten shards, not eleven
    const registry = new Registry()
    const node = new StorageNode(nodeInit(dir, capacity), { logger: silentLogger(), registry })
    await node.start()
    const client = new ShardClient({ address: node.grpcAddress(), deadlineMs: 5000 })
    try {
      const ten = Array.from({ length: 10 }, (_, i) => fixtureShard(100 + i, 0, 4096))
      assert.equal((await client.putShards(ten.slice(0, 6))).writtenCount, 6)
      assert.equal((await client.putShards(ten.slice(6))).writtenCount, 4)
      const extra = fixtureShard(200, 0, 4096)
      await assert.rejects(client.putShards([extra]), { name: 'CapacityExceededError' })
      // A batch mixing stored shards with one new one is refused whole: nothing of it is written.
      await assert.rejects(client.putShards([ten[0]!, extra]), { name: 'CapacityExceededError' })
      assert.deepEqual(await client.hasShards([extra.header]), [false])
      // Re-putting stored shards takes no new space, so it is not refused.
      assert.deepEqual(await client.putShards(ten.slice(0, 3)), { writtenCount: 0, existingCount: 3 })

      const stats = await client.stats()
      assert.equal(stats.capacityBytes, capacity)
      assert.equal(stats.usedBytes, 10 * shardBytes)
      assert.equal(stats.shardCount, 10)
      const metrics = await registry.metrics()
      assert.match(metrics, new RegExp(`^cairn_storage_node_capacity_bytes ${capacity}$`, 'm'))
      assert.match(metrics, new RegExp(`^cairn_storage_node_used_bytes ${10 * shardBytes}$`, 'm'))

      // Every shard acknowledged before the refusals still reads back intact.
      const back = await client.getShards(ten.map((s) => s.header))
      back.forEach((r, i) => assert.ok(r.ok && Buffer.from(r.shard.bytes).equals(Buffer.from(ten[i]!.bytes)), `shard ${i}`))

      await client.deleteShards([ten[0]!.header])
      assert.equal((await client.putShards([extra])).writtenCount, 1, 'a delete makes room')
    } finally {
      client.close()
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('does not overshoot when many batches race for the last bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-capacity-'))
    const shardBytes = fixtureShard(0, 0, 2048).bytes.byteLength
    const capacity = 5 * shardBytes
    const node = new StorageNode(nodeInit(dir, capacity), { logger: silentLogger(), registry: new Registry() })
    await node.start()
    const client = new ShardClient({ address: node.grpcAddress(), deadlineMs: 5000 })
    try {
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => client.putShards([fixtureShard(300 + i, 0, 2048)])))
      const written = results.filter((r) => r.status === 'fulfilled').length
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as Error).name, 'CapacityExceededError')
      assert.equal(written, 5)
      assert.equal((await client.stats()).usedBytes, capacity)
    } finally {
      client.close()
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
