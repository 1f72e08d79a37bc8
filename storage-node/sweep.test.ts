import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { BloomFilter } from '../core/bloom-filter.js'
import { silentLogger } from '../core/logger.js'
import { StorageNode } from './daemon.js'
import { ShardClient } from './shard-client.js'
import { fixtureShard, loopbackNodeInit } from './fixtures.js'

const SALT = Uint8Array.from({ length: 16 }, (_, i) => i * 3 + 1)

async function withNode(fn: (client: ShardClient) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-sweep-'))
  const node = new StorageNode(loopbackNodeInit(dir), { logger: silentLogger(), registry: new Registry() })
  await node.start()
  const client = new ShardClient({ address: node.grpcAddress() })
  try {
    await fn(client)
  } finally {
    client.close()
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Waits until Date.now() has moved past `ms`, so the next put is stamped strictly later. */
async function pastMs(ms: number): Promise<void> {
  while (Date.now() <= ms) await new Promise((resolve) => setImmediate(resolve))
}

test('sweep over gRPC deletes exactly the unmarked shards put before the cutoff, across list pages (64 shards a page)', async () => {
  await withNode(async (client) => {
    // 40 chunks of 2 shards; even chunks are marked. Puts go in batches under the node's 64-shard limit.
    const shards = Array.from({ length: 40 }, (_, c) => [fixtureShard(c, 0, 512), fixtureShard(c, 1, 512)]).flat()
    for (let i = 0; i < shards.length; i += 32) await client.putShards(shards.slice(i, i + 32))
    const marked = BloomFilter.create(20, 1e-4, SALT)
    for (let c = 0; c < 40; c += 2) marked.add(shards[c * 2]!.header.chunkCid)
    const cutoff = Date.now()
    await pastMs(cutoff)
    // Put after the cutoff: unmarked but young, so it stays.
    const young = fixtureShard(1000, 0, 512)
    await client.putShards([young])

    const dry = await client.sweep({ marked: marked.parts(), olderThanUnixMs: cutoff + 1, dryRun: true })
    assert.equal(dry.scannedShards, 81)
    assert.equal((await client.stats()).shardCount, 81, 'a dry run deletes nothing')

    const before = await client.stats()
    const res = await client.sweep({ marked: marked.parts(), olderThanUnixMs: cutoff + 1, dryRun: false })
    assert.deepEqual(res, dry, 'the dry run predicted the sweep')
    assert.equal(res.deletedShards, 40)
    assert.equal(res.youngShards, 1)
    const after = await client.stats()
    assert.equal(after.shardCount, 41)
    assert.equal(before.shardBytes - after.shardBytes, res.freedBytes)
    const present = [...(await client.hasShards(shards.slice(0, 40).map((s) => s.header))), ...(await client.hasShards(shards.slice(40).map((s) => s.header)))]
    present.forEach((p, i) => assert.equal(p, Math.floor(i / 2) % 2 === 0, `shard ${i}`))
    assert.deepEqual(await client.hasShards([young.header]), [true])
  })
})

test('a shard re-put after the cutoff survives: the store checks the cutoff itself', async () => {
  await withNode(async (client) => {
    const shard = fixtureShard(7, 0, 512)
    await client.putShards([shard])
    const cutoff = Date.now()
    await pastMs(cutoff)
    await client.putShards([shard])
    const empty = BloomFilter.create(1, 1e-4, SALT)
    const res = await client.sweep({ marked: empty.parts(), olderThanUnixMs: cutoff + 1, dryRun: false })
    assert.deepEqual([res.deletedShards, res.youngShards], [0, 1])
    assert.deepEqual(await client.hasShards([shard.header]), [true])
  })
})

test('sweep refuses a cutoff in the node\'s future, a zero cutoff and a malformed filter, deleting nothing', async () => {
  await withNode(async (client) => {
    await client.putShards([fixtureShard(1, 0, 512)])
    const parts = BloomFilter.create(1, 1e-4, SALT).parts()
    await assert.rejects(client.sweep({ marked: parts, olderThanUnixMs: Date.now() + 3_600_000, dryRun: false }), { name: 'SweepCutoffError' })
    await assert.rejects(client.sweep({ marked: parts, olderThanUnixMs: 0, dryRun: false }), { name: 'InvalidArgumentError' })
    await assert.rejects(client.sweep({ marked: { ...parts, version: 9 }, olderThanUnixMs: 1, dryRun: false }), { name: 'InvalidArgumentError' })
    await assert.rejects(client.sweep({ marked: { ...parts, salt: new Uint8Array(3) }, olderThanUnixMs: 1, dryRun: false }), { name: 'InvalidArgumentError' })
    assert.equal((await client.stats()).shardCount, 1)
  })
})

test('two sweeps sent at once both succeed (the second waits its turn) and each shard is deleted once', async () => {
  await withNode(async (client) => {
    const shards = Array.from({ length: 20 }, (_, c) => fixtureShard(500 + c, 0, 512))
    await client.putShards(shards)
    const cutoff = Date.now()
    await pastMs(cutoff)
    const empty = BloomFilter.create(1, 1e-4, SALT).parts()
    const [a, b] = await Promise.all([0, 1].map(() => client.sweep({ marked: empty, olderThanUnixMs: cutoff + 1, dryRun: false })))
    assert.equal(a!.deletedShards + b!.deletedShards, 20)
    assert.equal((await client.stats()).shardCount, 0)
  })
})
