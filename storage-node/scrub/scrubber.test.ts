import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { corruptOnDisk, createTestCluster, fakeClock, seededChunks, seededRandom, writeChunks, type TestCluster } from '../repair/test-support.js'
import type { SegmentShardStore } from '../segment-store.js'
import { Scrubber } from './scrubber.js'

async function withCluster(fn: (cluster: TestCluster) => Promise<void>): Promise<void> {
  const cluster = await createTestCluster(3)
  try {
    await fn(cluster)
  } finally {
    await cluster.stop()
  }
}

function scrubberFor(store: SegmentShardStore, registry = new Registry(), pageSize = 16) {
  return new Scrubber({ bytesPerSecond: Infinity, intervalMs: 0, pageSize }, { store, logger: silentLogger(), registry })
}

test('scrub finds every shard corrupted at random bytes on disk, and the store never serves them again', async () => {
  const seed = 20
  await withCluster(async (cluster) => {
    await writeChunks(cluster, seededChunks(100, 4096, seed), 2, 1)
    const store = cluster.stores.get('n0') as SegmentShardStore
    const rows = (await store.listShards({ pageSize: 10_000 })).shards
    const random = seededRandom(seed)
    const victims = rows.filter(() => random() < 0.05).slice(0, Math.max(1, Math.round(rows.length * 0.05)))
    for (const v of victims) await corruptOnDisk(store, v.address, random)
    const registry = new Registry()
    const report = await scrubberFor(store, registry).runPass()
    assert.equal(report.completed, true)
    assert.equal(report.badShards, victims.length, `seed ${seed}`)
    assert.equal(report.scrubbedShards, rows.length)
    assert.deepEqual(await store.hasShards(victims.map((v) => v.address)), victims.map(() => false), 'flagged shards are reported absent')
    for (const v of victims) await assert.rejects(store.getShard(v.address), { name: 'ShardCorruptError' })
    const metric = await registry.getSingleMetric('cairn_scrub_bad_shards_total')?.get()
    assert.equal(metric?.values[0]?.value, victims.length)
    const again = await scrubberFor(store).runPass()
    assert.equal(again.badShards, 0, 'a second pass counts them as already known, not new')
    assert.equal(again.knownCorruptShards, victims.length)
  })
})

test('an aborted pass resumes from its cursor in a new scrubber, and counts the whole pass once', async () => {
  await withCluster(async (cluster) => {
    await writeChunks(cluster, seededChunks(120, 2048, 3), 2, 1)
    const store = cluster.stores.get('n1') as SegmentShardStore
    const total = (await store.listShards({ pageSize: 10_000 })).shards.length
    const controller = new AbortController()
    const clock = fakeClock()
    const first = new Scrubber({ bytesPerSecond: 1e6, intervalMs: 0, pageSize: 8 }, { store, logger: silentLogger(), registry: new Registry(), clock })
    // Abort from the pacing clock once a few pages are done: a kill in the middle of a pass.
    const sleep = clock.sleep
    clock.sleep = async (ms, signal) => {
      if (clock.now > 20) controller.abort()
      return sleep(ms, signal)
    }
    const cut = await first.runPass(controller.signal)
    assert.equal(cut.completed, false)
    assert.ok(cut.scrubbedShards > 0 && cut.scrubbedShards < total, `cut after ${cut.scrubbedShards} of ${total}`)
    await first.stop()
    const second = scrubberFor(store, new Registry(), 8)
    await second.start()
    const resumed = await second.runPass()
    await second.stop()
    assert.equal(resumed.resumed, true)
    assert.equal(resumed.completed, true)
    // The cursor is saved per page: at most one page is read twice.
    assert.ok(resumed.scrubbedShards >= total && resumed.scrubbedShards <= total + 8, `${resumed.scrubbedShards} for ${total} shards`)
    assert.equal(second.stats().passesCompleted, 1)
  })
})

test('an unreadable state file starts a new pass instead of failing', async () => {
  await withCluster(async (cluster) => {
    await writeChunks(cluster, seededChunks(10, 1024, 4), 2, 1)
    const store = cluster.stores.get('n2') as SegmentShardStore
    await writeFile(join(store.init.dataDir, 'scrub-state.json'), '{"version": 1, "pageToken": 5')
    const scrubber = scrubberFor(store)
    await scrubber.start()
    const report = await scrubber.runPass()
    await scrubber.stop()
    assert.equal(report.resumed, false)
    assert.equal(report.scrubbedShards, (await store.stats()).shardCount)
  })
})

test('scrub pace stays within bytesPerSecond on an injected clock', async () => {
  await withCluster(async (cluster) => {
    await writeChunks(cluster, seededChunks(60, 8192, 5), 2, 1)
    const store = cluster.stores.get('n0') as SegmentShardStore
    const clock = fakeClock()
    const rate = 100_000
    const report = await new Scrubber({ bytesPerSecond: rate, intervalMs: 0 }, { store, logger: silentLogger(), registry: new Registry(), clock }).runPass()
    const burst = rate / 10
    assert.ok(report.scrubbedBytes <= burst + (rate * clock.now) / 1000 + 1, `${report.scrubbedBytes} bytes in ${clock.now} ms`)
    assert.ok(clock.now >= ((report.scrubbedBytes - burst) * 1000) / rate - 1, 'the pass waited for its tokens')
  })
})

test('started with an interval, the scrubber runs passes in the background until stopped', async () => {
  await withCluster(async (cluster) => {
    await writeChunks(cluster, seededChunks(10, 1024, 6), 2, 1)
    const store = cluster.stores.get('n0') as SegmentShardStore
    const scrubber = new Scrubber({ bytesPerSecond: Infinity, intervalMs: 5 }, { store, logger: silentLogger(), registry: new Registry() })
    await scrubber.start()
    const deadline = Date.now() + 60_000
    while (scrubber.stats().passesCompleted < 2) {
      assert.ok(Date.now() < deadline, 'two background passes within a minute')
      await new Promise((resolve) => setImmediate(resolve))
    }
    await scrubber.stop()
    assert.ok(scrubber.stats().scrubbedShards >= 2 * (await store.stats()).shardCount)
  })
})
