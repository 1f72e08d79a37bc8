import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { silentLogger } from '../../core/logger.js'
import { place } from '../../core/placement.js'
import type { Shard, ShardAddress } from '../../core/shard.js'
import type { PeerCallOptions, PeerShards } from '../mesh/types.js'
import type { SegmentShardStore } from '../segment-store.js'
import type { PaceClock } from '../scrub/pacing.js'
import { Scrubber } from '../scrub/scrubber.js'
import type { RepairerInit, RepairPassReport } from './repairer.js'
import {
  checkPlacement,
  repairerFor,
  corruptOnDisk,
  createTestCluster,
  fakeClock,
  seededChunks,
  seededRandom,
  testMember,
  writeChunks,
  type TestCluster,
  type WrittenChunk,
} from './test-support.js'

async function withCluster(members: number, fn: (cluster: TestCluster) => Promise<void>): Promise<void> {
  const cluster = await createTestCluster(members)
  try {
    await fn(cluster)
  } finally {
    await cluster.stop()
  }
}

/** One pass on every live member, repeated until a round changes nothing (bounded). @returns the rounds' reports */
async function repairUntilQuiet(cluster: TestCluster, roundsMax = 4, init: Partial<RepairerInit> = {}): Promise<RepairPassReport[]> {
  const reports: RepairPassReport[] = []
  for (let round = 0; round < roundsMax; round++) {
    let work = 0
    for (const member of [...cluster.stores.keys()]) {
      if (cluster.peers.down.has(member)) continue
      const report = await repairerFor(cluster, member, init).runPass()
      reports.push(report)
      work += report.movedShards + report.repairedShards + report.deletedShards
    }
    if (work === 0) return reports
  }
  throw new Error(`repair did not settle in ${roundsMax} rounds`)
}

function sum(reports: readonly RepairPassReport[], key: 'movedShards' | 'repairedShards' | 'deletedShards'): number {
  return reports.reduce((n, r) => n + r[key], 0)
}

async function assertFullyPlaced(cluster: TestCluster, written: readonly WrittenChunk[]): Promise<void> {
  const check = await checkPlacement(cluster, written)
  assert.deepEqual(check.bad, [], 'every shard is at its target, verified and byte-identical')
  assert.deepEqual(check.misplaced, [], 'no copy is left off its placement')
  assert.equal(check.healthy, written.reduce((n, c) => n + c.shards.length, 0))
}

test('2+1: shards corrupted at random bytes (1%) are all found by scrub and all rebuilt by repair', async () => {
  const seed = 101
  await withCluster(4, async (cluster) => {
    const written = await writeChunks(cluster, seededChunks(200, 4096, seed), 2, 1)
    const random = seededRandom(seed)
    const all: { member: string; address: ShardAddress }[] = []
    for (const [member, store] of cluster.stores) for (const s of (await store.listShards({ pageSize: 10_000 })).shards) all.push({ member, address: s.address })
    const victimCount = Math.ceil(all.length / 100)
    const victims = new Set<number>()
    while (victims.size < victimCount) victims.add(Math.floor(random() * all.length))
    for (const i of victims) await corruptOnDisk(cluster.stores.get(all[i]!.member) as SegmentShardStore, all[i]!.address, random)

    let found = 0
    for (const [member, store] of cluster.stores) {
      found += (await new Scrubber({ bytesPerSecond: Infinity, intervalMs: 0 }, { store, logger: silentLogger(), registry: cluster.registry(member) }).runPass()).badShards
    }
    assert.equal(found, victimCount, `seed ${seed}: scrub finds every corrupted shard`)
    const reports = await repairUntilQuiet(cluster)
    assert.equal(sum(reports, 'repairedShards'), victimCount, `seed ${seed}: each is rebuilt exactly once`)
    // A node whose only copy of a chunk is corrupt learns k and m from a peer's shard instead of giving up.
    assert.ok(reports.every((r) => r.failures['no-header'] === undefined))
    await assertFullyPlaced(cluster, written)
    for (const store of cluster.stores.values()) assert.equal((await store.stats()).corruptShardCount, 0, 'rebuilt copies replaced the corrupt rows')
  })
})

test('4+2: a member removed for good has every shard rebuilt on the new placement, checked by reading every shard', async () => {
  await withCluster(7, async (cluster) => {
    const written = await writeChunks(cluster, seededChunks(60, 8192, 7), 4, 2)
    const lost = (await cluster.stores.get('n3')!.listShards({ pageSize: 10_000 })).shards.length
    assert.ok(lost > 0)
    await cluster.destroyStore('n3')
    cluster.maps.publish(cluster.maps.current().members.filter((m) => m.id !== 'n3'))
    const reports = await repairUntilQuiet(cluster)
    assert.equal(sum(reports, 'repairedShards'), lost, 'exactly the lost shards are rebuilt, once each')
    await assertFullyPlaced(cluster, written)
    const rebuilt = await cluster.registry('n0').getSingleMetric('cairn_repair_shards_total')?.get()
    assert.ok(rebuilt?.values.some((v) => v.labels.action === 'rebuilt'))
  })
})

test('a member added: shards move to the new placement, and old copies stay until the new member confirmed them', async () => {
  await withCluster(3, async (cluster) => {
    const written = await writeChunks(cluster, seededChunks(80, 4096, 9), 2, 1)
    await cluster.addStore('n3')
    cluster.maps.publish([...cluster.maps.current().members, testMember('n3')])
    const toMove = written.flatMap((c) => place(c.cid, 3, cluster.maps.current()).flatMap((m, i) => (m.id === 'n3' ? [{ chunkCid: c.cid, index: i }] : [])))
    assert.ok(toMove.length > 0, 'the new member takes some slots')

    // While the new member is unreachable nothing bound for it moves or is deleted (shards reshuffled between old members may move).
    cluster.peers.down.add('n3')
    for (const member of ['n0', 'n1', 'n2']) await repairerFor(cluster, member).runPass()
    for (const address of toMove) {
      const holders = await Promise.all(['n0', 'n1', 'n2'].map((m) => cluster.stores.get(m)!.hasShards([address])))
      assert.equal(holders.filter(([has]) => has === true).length, 1, 'every shard bound for the new member still exists once on an old holder')
    }

    cluster.peers.down.delete('n3')
    // Small puts: moves are split across several puts per target, each confirmed before its deletes.
    const reports = await repairUntilQuiet(cluster, 4, { putBatchBytesMax: 4096 })
    assert.ok(sum(reports, 'movedShards') >= toMove.length)
    assert.equal(sum(reports, 'repairedShards'), 0, 'a move copies, it never rebuilds')
    await assertFullyPlaced(cluster, written)
    assert.deepEqual(await cluster.stores.get('n3')!.hasShards(toMove), toMove.map(() => true))
  })
})

test('a failed push deletes nothing: the local copy stays until a later pass moves it', async () => {
  await withCluster(3, async (cluster) => {
    const written = await writeChunks(cluster, seededChunks(30, 4096, 11), 2, 1)
    await cluster.addStore('n3')
    cluster.maps.publish([...cluster.maps.current().members, testMember('n3')])
    const refusing: PeerShards = {
      has: (m, a, o) => cluster.peers.has(m, a, o),
      get: (m, a, o) => cluster.peers.get(m, a, o),
      put: async (m: string, shards: readonly Shard[], o?: PeerCallOptions) => {
        if (m === 'n3') throw new (await import('./test-support.js')).PeerUnreachableError('refused')
        return cluster.peers.put(m, shards, o)
      },
    }
    for (const member of ['n0', 'n1', 'n2']) {
      const report = await repairerFor(cluster, member, {}, { peers: refusing }).runPass()
      assert.equal(report.deletedShards, 0)
      if (report.failedShards > 0) assert.ok((report.failures['put-failed'] ?? 0) > 0)
    }
    const check = await checkPlacement(cluster, written)
    assert.ok(check.misplaced.length > 0)
    assert.equal(check.healthy + check.bad.length, written.length * 3)
    await repairUntilQuiet(cluster)
    await assertFullyPlaced(cluster, written)
  })
})

test('killed mid-pass, a new repairer on the same state dir resumes from the cursor, not from zero', async () => {
  await withCluster(4, async (cluster) => {
    const written = await writeChunks(cluster, seededChunks(160, 2048, 13), 2, 1)
    await cluster.destroyStore('n3')
    cluster.maps.publish(cluster.maps.current().members.filter((m) => m.id !== 'n3'))
    const chunksHeld = new Set((await cluster.stores.get('n0')!.listShards({ pageSize: 10_000 })).shards.map((s) => Buffer.from(s.address.chunkCid).toString('hex'))).size

    const controller = new AbortController()
    let puts = 0
    cluster.peers.beforeCall = (kind) => {
      if (kind === 'put' && ++puts === 4) controller.abort()
    }
    const cut = await repairerFor(cluster, 'n0', { batchChunks: 4 }).runPass(controller.signal)
    cluster.peers.beforeCall = undefined
    assert.equal(cut.completed, false)
    assert.ok(cut.chunksExamined > 0)

    const resumed = await repairerFor(cluster, 'n0', { batchChunks: 4 }).runPass()
    assert.equal(resumed.resumed, true)
    assert.equal(resumed.completed, true)
    assert.ok(resumed.chunksExaminedThisRun < chunksHeld, `resumed pass examined ${resumed.chunksExaminedThisRun} of ${chunksHeld} chunks`)
    assert.ok(resumed.chunksExaminedThisRun + cut.chunksExamined >= chunksHeld, 'together the two runs covered every chunk')
    assert.equal(resumed.chunksExamined, cut.chunksExaminedThisRun + resumed.chunksExaminedThisRun, 'the pass counters survived the restart')

    const heldNow = new Set((await cluster.stores.get('n0')!.listShards({ pageSize: 10_000 })).shards.map((s) => Buffer.from(s.address.chunkCid).toString('hex'))).size
    const fresh = await repairerFor(cluster, 'n0', { batchChunks: 4 }).runPass()
    assert.equal(fresh.resumed, false, 'a completed pass leaves no cursor')
    assert.equal(fresh.chunksExaminedThisRun, heldNow, 'the next pass starts from the first chunk')
    await repairUntilQuiet(cluster)
    await assertFullyPlaced(cluster, written)
  })
})

test('repair traffic stays within cap / active members, measured on an injected clock', async () => {
  await withCluster(4, async (cluster) => {
    await writeChunks(cluster, seededChunks(120, 8192, 17), 2, 1)
    await cluster.destroyStore('n3')
    cluster.maps.publish(cluster.maps.current().members.filter((m) => m.id !== 'n3'))
    // Store clocks are real: start the fake one at the real time so copies count as settled.
    const clock: PaceClock & { now: number } = fakeClock()
    const startMs = Date.now() + 1
    const capBytesPerSecond = 600_000
    const perNode = capBytesPerSecond / 3
    const log: { atMs: number; bytes: number }[] = []
    const metered: PeerShards = {
      has: (m, a, o) => cluster.peers.has(m, a, o),
      get: async (m, a, o) => {
        const results = await cluster.peers.get(m, a, o)
        for (const r of results) if (r.ok) log.push({ atMs: clock.now, bytes: r.shard.bytes.byteLength })
        return results
      },
      put: async (m, shards, o) => {
        await cluster.peers.put(m, shards, o)
        log.push({ atMs: clock.now - startMs, bytes: shards.reduce((n, s) => n + s.bytes.byteLength, 0) })
      },
    }
    let moved = 0
    for (const member of ['n0', 'n1', 'n2']) {
      log.length = 0
      clock.now = startMs
      await repairerFor(cluster, member, { bandwidthBytesPerSecond: capBytesPerSecond }, { peers: metered, clock }).runPass()
      let total = 0
      for (const entry of log) {
        total += entry.bytes
        assert.ok(total <= perNode / 10 + (perNode * entry.atMs) / 1000 + 1, `${member}: ${total} bytes by ${entry.atMs} ms exceeds the pace`)
      }
      moved += total
      if (total > perNode / 10) assert.ok(clock.now - startMs >= ((total - perNode / 10) * 1000) / perNode - 1, 'the pass waited for its tokens')
    }
    assert.ok(moved > 0, 'the lost member left work to pace')
  })
})

test('bad options are refused with typed errors, and an unreadable state file starts a fresh pass', async () => {
  await withCluster(3, async (cluster) => {
    assert.throws(() => repairerFor(cluster, 'n0', { bandwidthBytesPerSecond: 0 }), { name: 'InvalidArgumentError' })
    assert.throws(() => repairerFor(cluster, 'n0', { batchChunks: 0 }), { name: 'InvalidArgumentError' })
    assert.throws(() => repairerFor(cluster, 'n0', { stateDir: '' }), { name: 'InvalidArgumentError' })
    await writeChunks(cluster, seededChunks(10, 1024, 19), 2, 1)
    const stateDir = join(cluster.dir, 'state-n0')
    await mkdir(stateDir, { recursive: true })
    await writeFile(join(stateDir, 'repair-state.json'), '{"version":1,"cursor":{"cidHex":"zz"}}')
    const repairer = repairerFor(cluster, 'n0')
    await repairer.start()
    const report = await repairer.runPass()
    await repairer.stop()
    assert.equal(report.resumed, false)
    assert.equal(report.completed, true)
    assert.equal(repairer.stats().passesCompleted, 1)
  })
})

test('started with an interval, the repairer runs passes in the background until stopped', async () => {
  await withCluster(3, async (cluster) => {
    await writeChunks(cluster, seededChunks(10, 1024, 23), 2, 1)
    const repairer = repairerFor(cluster, 'n1', { intervalMs: 5 })
    await repairer.start()
    const deadline = Date.now() + 60_000
    while (repairer.stats().passesCompleted < 2) {
      assert.ok(Date.now() < deadline, 'two background passes within a minute')
      await new Promise((resolve) => setImmediate(resolve))
    }
    await repairer.stop()
    const after = repairer.stats().passesCompleted
    assert.ok(after >= 2)
    assert.ok(repairer.stats().lastPassCompletedUnixMs > 0)
  })
})
