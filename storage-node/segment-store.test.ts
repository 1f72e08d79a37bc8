import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, open, writeFile, readdir, stat, appendFile, cp } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import Database from 'better-sqlite3'
import { silentLogger } from '../core/logger.js'
import { encodeShard, type Shard } from '../core/shard.js'
import { createSegmentShardStore, type SegmentShardStore, type SegmentStoreInit } from './segment-store.js'
import { createStorageNodeMetrics } from './metrics.js'
import { addressHash, SEGMENT_ID_LIMIT } from './segment-index.js'
import { fixtureCid, fixtureShard } from './fixtures.js'
import { killTestBatch } from './segment-store-kill.fixture.js'
import { xorshift32 } from '../core/seeded-random.js'

async function withStore(init: Partial<SegmentStoreInit>, fn: (store: SegmentShardStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  const store = createSegmentShardStore({ dataDir: dir, compactionIntervalMs: 0, ...init }, { logger: silentLogger() })
  await store.start()
  try {
    await fn(store, dir)
  } finally {
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

async function reopen(dir: string, init: Partial<SegmentStoreInit> = {}): Promise<SegmentShardStore> {
  const store = createSegmentShardStore({ dataDir: dir, compactionIntervalMs: 0, ...init }, { logger: silentLogger() })
  await store.start()
  return store
}

async function assertReadsBack(store: SegmentShardStore, shards: readonly Shard[]): Promise<void> {
  for (const s of shards) {
    const got = await store.getShard(s.header)
    assert.ok(Buffer.from(got.bytes).equals(Buffer.from(s.bytes)), `shard ${s.header.index} reads back`)
  }
}

test('put, get, has and delete round-trip, and a re-put is idempotent', async () => {
  await withStore({}, async (store) => {
    const shards = [fixtureShard(1, 0), fixtureShard(1, 1), fixtureShard(2, 5, 0)]
    assert.deepEqual(await store.putShards(shards), { writtenCount: 3, existingCount: 0 })
    assert.deepEqual(await store.putShards([shards[0] as Shard]), { writtenCount: 0, existingCount: 1 })
    await assertReadsBack(store, shards)
    const missing = fixtureShard(3, 0)
    assert.deepEqual(await store.hasShards([shards[0] as Shard, missing].map((s) => s.header)), [true, false])
    await assert.rejects(store.getShard(missing.header), { name: 'ShardNotFoundError' })
    assert.equal(await store.deleteShards([shards[0]!.header, missing.header]), 1)
    assert.equal(await store.deleteShards([shards[0]!.header]), 0, 'deleting what is gone succeeds')
    await assert.rejects(store.getShard(shards[0]!.header), { name: 'ShardNotFoundError' })
    const stats = await store.stats()
    assert.equal(stats.shardCount, 2)
    assert.equal(stats.shardBytes, shards[1]!.bytes.length + shards[2]!.bytes.length)
  })
})

test('a shard put twice in one group is written once', async () => {
  await withStore({}, async (store) => {
    const s = fixtureShard(9, 0)
    const results = await Promise.all([store.putShards([s]), store.putShards([s]), store.putShards([s, s])])
    const written = results.reduce((n, r) => n + r.writtenCount, 0)
    assert.equal(written, 1)
    assert.equal((await store.stats()).shardCount, 1)
  })
})

test('concurrent puts share fsyncs (group commit), and the address map gauge is kept', async () => {
  const registry = new Registry()
  const metrics = createStorageNodeMetrics(registry)
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  const store = createSegmentShardStore({ dataDir: dir, compactionIntervalMs: 0 }, { logger: silentLogger(), metrics })
  await store.start()
  try {
    const puts = Array.from({ length: 64 }, (_, i) => store.putShards([fixtureShard(i, 0, 4096)]))
    await Promise.all(puts)
    const fsyncs = (await registry.getSingleMetric('cairn_storage_node_fsync_duration_seconds')!.get()).values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count'))?.value
    assert.ok(fsyncs !== undefined && fsyncs >= 1 && fsyncs < 64, `64 puts took ${fsyncs} fsyncs`)
    store.flushIndex()
    const mapBytes = (await registry.getSingleMetric('cairn_storage_node_address_map_bytes')!.get()).values[0]?.value
    assert.ok(store.index.addressMapBytes > 0)
    assert.equal(mapBytes, store.index.addressMapBytes, 'the address map gauge follows the map')
  } finally {
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('delete with a last-put cutoff keeps shards put at or after it', async () => {
  let now = 1000
  await withStore({ nowMs: () => now }, async (store) => {
    const old = fixtureShard(1, 0)
    const fresh = fixtureShard(2, 0)
    await store.putShards([old])
    now = 2000
    await store.putShards([fresh])
    assert.equal(await store.deleteShards([old.header, fresh.header], { lastPutBeforeUnixMs: 1500 }), 1)
    assert.deepEqual(await store.hasShards([old.header, fresh.header]), [false, true])
    now = 3000
    await store.putShards([fresh]) // a re-put refreshes the clock GC checks
    assert.equal(await store.deleteShards([fresh.header], { lastPutBeforeUnixMs: 2500 }), 0)
  })
})

test('listing pages through every shard in location (put) order and honours a CID prefix', async () => {
  await withStore({}, async (store) => {
    const shards = Array.from({ length: 25 }, (_, i) => fixtureShard(Math.floor(i / 3), i % 3, 16))
    await store.putShards(shards)
    const seen: string[] = []
    let token: string | undefined
    let pages = 0
    do {
      const page = await store.listShards({ pageSize: 7, pageToken: token })
      assert.ok(page.shards.length <= 7)
      for (const s of page.shards) seen.push(`${Buffer.from(s.address.chunkCid).toString('hex')}/${s.address.index}`)
      token = page.nextPageToken
      pages += 1
    } while (token !== undefined)
    assert.equal(pages, 4)
    assert.equal(new Set(seen).size, 25)
    assert.deepEqual(seen, shards.map((s) => `${Buffer.from(s.header.chunkCid).toString('hex')}/${s.header.index}`))
    const cid = fixtureCid('chunk-2')
    const prefixed = await store.listShards({ cidPrefix: cid })
    assert.deepEqual(prefixed.shards.map((s) => s.address.index), [0, 1, 2])
    await assert.rejects(store.listShards({ pageToken: 'garbage' }), { name: 'PageTokenError' })
    // A token of the version-1 index (keyed by CID): a walk persisted across an upgrade restarts.
    await assert.rejects(store.listShards({ pageToken: `1.${Buffer.from(cid).toString('base64url')}.0` }), { name: 'PageTokenError' })
    await assert.rejects(store.listShards({ pageToken: `2.${2 ** 21}.0` }), { name: 'PageTokenError' })
    await assert.rejects(store.listShards({ pageSize: 0 }), { name: 'PageTokenError' })
  })
})

test('a restart keeps every shard and the counters', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  try {
    const shards = Array.from({ length: 40 }, (_, i) => fixtureShard(i, i % 6, 2048))
    let store = await reopen(dir, { segmentSizeBytes: 16 * 1024 })
    for (let i = 0; i < shards.length; i += 4) await store.putShards(shards.slice(i, i + 4))
    await store.deleteShards([shards[0]!.header])
    const before = await store.stats()
    await store.stop()
    assert.ok(before.segmentCount > 2, 'small segments roll')
    store = await reopen(dir, { segmentSizeBytes: 16 * 1024 })
    try {
      assert.deepEqual(await store.stats(), before)
      await assertReadsBack(store, shards.slice(1))
      await assert.rejects(store.getShard(shards[0]!.header), { name: 'ShardNotFoundError' })
    } finally {
      await store.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('compaction reclaims dead space and keeps every live shard readable across a restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  const init = { segmentSizeBytes: 64 * 1024, compactionLiveRatio: 0.5 }
  try {
    const shards = Array.from({ length: 120 }, (_, i) => fixtureShard(i, 0, 4000))
    let store = await reopen(dir, init)
    for (let i = 0; i < shards.length; i += 10) await store.putShards(shards.slice(i, i + 10))
    const dead = shards.filter((_, i) => i % 4 !== 0)
    const live = shards.filter((_, i) => i % 4 === 0)
    await store.deleteShards(dead.map((s) => s.header))
    const before = await store.stats()
    let compacted = 0
    while (await store.compactOnce()) compacted += 1
    const after = await store.stats()
    assert.ok(compacted >= 3, `compacted ${compacted} segments`)
    assert.ok(after.segmentBytes < before.segmentBytes / 2, `segment bytes ${before.segmentBytes} -> ${after.segmentBytes}`)
    assert.equal(after.shardCount, live.length)
    await assertReadsBack(store, live)
    const files = (await readdir(join(dir, 'segments'))).length
    assert.equal(files, after.segmentCount, 'old segment files are unlinked')
    await store.stop()
    store = await reopen(dir, init)
    await assertReadsBack(store, live)
    assert.deepEqual(await store.stats(), after)
    await store.stop()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a flipped byte on disk fails only that shard, with ShardCorruptError, until a put replaces it', async () => {
  await withStore({}, async (store, dir) => {
    const shards = Array.from({ length: 10 }, (_, i) => fixtureShard(i, 1, 3000))
    await store.putShards(shards)
    const victim = shards[4] as Shard
    const [info] = (await store.listShards({ cidPrefix: victim.header.chunkCid })).shards
    assert.ok(info)
    const row = store.index.lookup(victim.header)!
    const fh = await open(join(dir, 'segments', (await readdir(join(dir, 'segments')))[0]!), 'r+')
    const one = Buffer.alloc(1)
    await fh.read(one, 0, 1, row.offset + row.length - 100)
    one[0] = one[0]! ^ 0x10
    await fh.write(one, 0, 1, row.offset + row.length - 100)
    await fh.close()
    await assert.rejects(store.getShard(victim.header), { name: 'ShardCorruptError' })
    await assert.rejects(store.getShard(victim.header), { name: 'ShardCorruptError' }, 'stays corrupt')
    const results = await store.getShards(shards.map((s) => s.header))
    assert.deepEqual(results.map((r) => r.ok), shards.map((s) => s !== victim))
    assert.equal(results[4]?.ok === false && results[4].error.name, 'ShardCorruptError')
    assert.deepEqual(await store.hasShards([victim.header]), [false])
    assert.equal((await store.stats()).corruptShardCount, 1)
    assert.deepEqual(await store.putShards([victim]), { writtenCount: 1, existingCount: 0 }, 'repair rewrites it')
    await assertReadsBack(store, shards)
    assert.equal((await store.stats()).corruptShardCount, 0)
  })
})

test('recovery indexes a verified tail record, truncates a torn one, and removes orphan files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  try {
    let store = await reopen(dir)
    const first = fixtureShard(1, 0)
    await store.putShards([first])
    const segPath = store.active.path
    await store.stop()
    // As if the fsync finished but the index commit was lost: a whole record past the committed size...
    const tail = fixtureShard(2, 0)
    await appendFile(segPath, tail.bytes)
    const committedEnd = (await stat(segPath)).size
    // ...followed by a torn write.
    await appendFile(segPath, fixtureShard(3, 0).bytes.subarray(0, 500))
    await writeFile(join(dir, 'segments', '000777.seg'), 'orphan')
    store = await reopen(dir)
    await assertReadsBack(store, [first, tail])
    await assert.rejects(store.getShard(fixtureShard(3, 0).header), { name: 'ShardNotFoundError' })
    assert.equal((await stat(segPath)).size, committedEnd)
    assert.ok(!(await readdir(join(dir, 'segments'))).includes('000777.seg'))
    const next = fixtureShard(4, 0)
    await store.putShards([next])
    await assertReadsBack(store, [first, tail, next])
    await store.stop()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a second store on the same directory is refused', async () => {
  await withStore({}, async (_store, dir) => {
    const second = createSegmentShardStore({ dataDir: dir, compactionIntervalMs: 0 }, { logger: silentLogger() })
    await assert.rejects(second.start(), { name: 'DataDirError' })
  })
})

test('malformed addresses are rejected without touching stored data', async () => {
  await withStore({}, async (store) => {
    const s = fixtureShard(1, 0)
    await store.putShards([s])
    const bad = [{ chunkCid: new Uint8Array([1, 2, 3]), index: 0 }, { chunkCid: s.header.chunkCid, index: -1 }, { chunkCid: s.header.chunkCid, index: 300 }]
    for (const a of bad) {
      await assert.rejects(store.getShard(a), { name: 'ShardFormatError' })
      await assert.rejects(store.hasShards([a]), { name: 'ShardFormatError' })
      await assert.rejects(store.deleteShards([a]), { name: 'ShardFormatError' })
    }
    await assertReadsBack(store, [s])
  })
})

/** Copies a running store's directory: what a SIGKILL leaves (the page cache survives, memory does not). */
async function crashCopy(dir: string): Promise<string> {
  const copy = await mkdtemp(join(tmpdir(), 'cairn-store-crash-'))
  await cp(dir, copy, { recursive: true })
  return copy
}

const neverFlush: Partial<SegmentStoreInit> = { indexFlushRecords: 1_000_000, indexFlushIntervalMs: 3_600_000 }

test('acknowledged shards still waiting for the index read, dedupe, list and delete like indexed ones', async () => {
  await withStore(neverFlush, async (store) => {
    const shards = Array.from({ length: 6 }, (_, i) => fixtureShard(i, 2, 2048))
    assert.deepEqual(await store.putShards(shards), { writtenCount: 6, existingCount: 0 })
    assert.equal(store.index.lookup(shards[0]!.header), undefined, 'the rows wait in memory')
    await assertReadsBack(store, shards)
    assert.deepEqual(await store.hasShards(shards.map((s) => s.header)), shards.map(() => true))
    assert.deepEqual(await store.putShards([shards[1]!]), { writtenCount: 0, existingCount: 1 })
    assert.equal(await store.deleteShards([shards[2]!.header]), 1)
    await assert.rejects(store.getShard(shards[2]!.header), { name: 'ShardNotFoundError' })
    assert.equal((await store.listShards()).shards.length, 5)
    assert.equal((await store.stats()).shardCount, 5)
  })
})

/** Waits (bounded) until the index itself, not the waiting records, holds `shard`. */
async function untilIndexed(store: SegmentShardStore, shard: Shard, what: string): Promise<void> {
  const deadline = Date.now() + 20_000
  while (store.index.lookup(shard.header) === undefined) {
    assert.ok(Date.now() < deadline, what)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

for (const indexWorker of [true, false]) {
  test(`the index catches up on its own: past indexFlushRecords during a put, and after indexFlushIntervalMs (index worker: ${indexWorker})`, async () => {
    // No timer here: only the second put can start the flush of the first group.
    await withStore({ indexWorker, indexFlushRecords: 4, indexFlushIntervalMs: 3_600_000 }, async (store) => {
      const shards = Array.from({ length: 8 }, (_, i) => fixtureShard(i, 0, 512))
      await store.putShards(shards.slice(0, 4))
      assert.equal(store.index.lookup(shards[0]!.header), undefined, 'four records wait')
      await store.putShards(shards.slice(4, 8))
      await untilIndexed(store, shards[0]!, 'the second put indexed the first group')
      await assertReadsBack(store, shards)
    })
    await withStore({ indexWorker, indexFlushRecords: 1_000_000, indexFlushIntervalMs: 20 }, async (store) => {
      const shards = Array.from({ length: 4 }, (_, i) => fixtureShard(i, 0, 512))
      await store.putShards(shards)
      await untilIndexed(store, shards[3]!, 'the timer indexes the last group')
      await assertReadsBack(store, shards)
      assert.equal((await store.stats()).shardCount, 4)
    })
  })
}

test('a crash loses waiting index rows but no acknowledged shard: recovery rolls them forward, replacing a corrupt copy', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  let copy: string | undefined
  try {
    const store = await reopen(dir, neverFlush)
    const shards = Array.from({ length: 8 }, (_, i) => fixtureShard(i, 1, 4096))
    await store.putShards(shards.slice(0, 4))
    const victim = shards[1] as Shard
    const row = (await store.listShards({ cidPrefix: victim.header.chunkCid })).shards[0] // flushes the index
    assert.ok(row)
    const segment = await open(store.active.path, 'r+')
    const at = store.index.lookup(victim.header)!.offset + 200
    await segment.write(Buffer.from([0xff ^ (await segment.read(Buffer.alloc(1), 0, 1, at)).buffer[0]!]), 0, 1, at)
    await segment.close()
    await assert.rejects(store.getShard(victim.header), { name: 'ShardCorruptError' })
    // The repair's put and four new shards are acknowledged but their rows only wait in memory.
    assert.deepEqual(await store.putShards([victim, ...shards.slice(4)]), { writtenCount: 5, existingCount: 0 })
    copy = await crashCopy(dir)
    await store.stop()
    const recovered = await reopen(copy)
    try {
      await assertReadsBack(recovered, shards)
      const stats = await recovered.stats()
      assert.equal(stats.shardCount, 8)
      assert.equal(stats.corruptShardCount, 0)
    } finally {
      await recovered.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    if (copy !== undefined) await rm(copy, { recursive: true, force: true })
  }
})

test('recovery truncates a zero-filled tail (space allocated, data never written) and keeps every shard', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  try {
    let store = await reopen(dir)
    const shards = [fixtureShard(1, 0), fixtureShard(2, 0)]
    await store.putShards(shards)
    const segPath = store.active.path
    const committedEnd = (await stat(segPath)).size
    await store.stop()
    await appendFile(segPath, Buffer.alloc(256 * 1024))
    store = await reopen(dir)
    try {
      await assertReadsBack(store, shards)
      assert.equal((await stat(segPath)).size, committedEnd)
      const next = fixtureShard(3, 0)
      await store.putShards([next])
      await assertReadsBack(store, [...shards, next])
    } finally {
      await store.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

/** A gate a test opens by hand: holds a write until the test lets it finish (or fail). */
function gate(): { wait: Promise<void>; open: () => void; fail: (err: Error) => void } {
  let open!: () => void
  let fail!: (err: Error) => void
  const wait = new Promise<void>((resolve, reject) => {
    open = resolve
    fail = reject
  })
  // Failing the gate before the write reaches it is not an unhandled rejection: the write awaits it later.
  wait.catch(() => undefined)
  return { wait, open, fail }
}

/** Lets every queued callback and microtask run a few times over: long enough for a premature ack to show. */
async function settleTurns(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Holds the active segment's next durable write at a gate; resolves `started` when the write was issued. */
function holdNextWrite(store: SegmentShardStore, until: Promise<void>): Promise<void> {
  const segment = store.active
  const original = segment.writeDurably.bind(segment)
  return new Promise((started) => {
    segment.writeDurably = async (buffers, position) => {
      segment.writeDurably = original
      started()
      const written = await original(buffers, position)
      await until
      return written
    }
  })
}

test('a put is acknowledged, and its shards become visible, only after the durable write covering them, even while the index flushes', async () => {
  await withStore({ indexFlushRecords: 4, indexFlushIntervalMs: 3_600_000 }, async (store) => {
    const first = Array.from({ length: 4 }, (_, i) => fixtureShard(i, 0, 1024))
    const second = Array.from({ length: 4 }, (_, i) => fixtureShard(100 + i, 0, 1024))
    await store.putShards(first)
    const slow = gate()
    const started = holdNextWrite(store, slow.wait)
    let acked = false
    const put = store.putShards(second).then((r) => {
      acked = true
      return r
    })
    await started
    // The flush of the first group (on the index worker) finishes while the write is held.
    await untilIndexed(store, first[0]!, 'the first group was indexed during the slow write')
    await settleTurns()
    assert.equal(acked, false, 'no ack before the write returns')
    assert.deepEqual(await store.hasShards(second.map((s) => s.header)), [false, false, false, false])
    await assert.rejects(store.getShard(second[0]!.header), { name: 'ShardNotFoundError' })
    slow.open()
    assert.deepEqual(await put, { writtenCount: 4, existingCount: 0 })
    await assertReadsBack(store, [...first, ...second])
  })
})

test('a durable write that fails late acknowledges nothing and the same shards can be put again', async () => {
  await withStore({ indexFlushRecords: 4 }, async (store) => {
    const before = [fixtureShard(1, 0), fixtureShard(2, 0)]
    await store.putShards(before)
    const size = (await store.stats()).segmentBytes
    const failing = gate()
    const started = holdNextWrite(store, failing.wait)
    const doomed = [fixtureShard(3, 0), fixtureShard(4, 0)]
    const put = store.putShards(doomed)
    await started
    failing.fail(Object.assign(new Error('injected EIO'), { code: 'EIO' }))
    await assert.rejects(put, { code: 'EIO' })
    assert.deepEqual(await store.hasShards(doomed.map((s) => s.header)), [false, false])
    assert.equal((await stat(store.active.path)).size, size, 'the unacknowledged tail is cut off')
    assert.deepEqual(await store.putShards(doomed), { writtenCount: 2, existingCount: 0 })
    await assertReadsBack(store, [...before, ...doomed])
  })
})

test('after a restart the address map is loaded from the index: re-puts find every stored shard and write nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  let clock = 1_000
  try {
    let store = await reopen(dir, { indexFlushRecords: 8, nowMs: () => clock })
    const shards = Array.from({ length: 20 }, (_, i) => fixtureShard(i, i % 6, 512))
    for (let i = 0; i < shards.length; i += 5) await store.putShards(shards.slice(i, i + 5))
    await store.stop()
    store = await reopen(dir, { nowMs: () => clock })
    try {
      const bytes = (await store.stats()).segmentBytes
      clock = 2_000
      assert.deepEqual(await store.putShards(shards.slice(0, 10)), { writtenCount: 0, existingCount: 10 })
      clock = 3_000
      assert.deepEqual(await store.putShards(shards), { writtenCount: 0, existingCount: 20 })
      const fresh = fixtureShard(99, 0, 512)
      assert.deepEqual(await store.putShards([fresh, fresh]), { writtenCount: 1, existingCount: 1 })
      const stats = await store.stats()
      assert.equal(stats.shardCount, 21)
      assert.equal(stats.segmentBytes, bytes + fresh.bytes.length, 're-puts wrote nothing')
      const listed = (await store.listShards()).shards
      assert.ok(listed.every((s) => s.lastPutUnixMs === 3_000), 're-puts refreshed every last-put time')
    } finally {
      await store.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('two different shards whose address hashes collide are both written, in one group and after it', async () => {
  // Birthday search over seeded CIDs (sha2-256 shape, random digest) for a 32-bit hash collision.
  const seed = 0xc0111de
  const next = xorshift32(seed)
  const byHash = new Map<number, Uint8Array>()
  let pair: [Uint8Array, Uint8Array] | undefined
  for (let n = 0; n < 2_000_000 && pair === undefined; n++) {
    const cid = new Uint8Array(36)
    cid.set([0x01, 0x55, 0x12, 0x20])
    for (let i = 4; i < 36; i++) cid[i] = next() & 0xff
    const h = addressHash(cid, 0)
    const other = byHash.get(h)
    if (other !== undefined) pair = [other, cid]
    else byHash.set(h, cid)
  }
  assert.ok(pair, `seed ${seed}: no collision found`)
  const [a, b] = pair.map((chunkCid, i) => encodeShard({ chunkCid, k: 4, m: 2, index: 0, chunkLengthBytes: 4096, payload: new Uint8Array(1024).fill(i + 1) })) as [Shard, Shard]
  await withStore({}, async (store) => {
    assert.deepEqual(await store.putShards([a, b, a]), { writtenCount: 2, existingCount: 1 }, `seed ${seed}`)
    await assertReadsBack(store, [a, b])
  })
  // Across groups, indexed, after a restart (the map reloads both under one hash), and after one is deleted.
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  try {
    let store = await reopen(dir, {})
    assert.deepEqual(await store.putShards([a]), { writtenCount: 1, existingCount: 0 })
    store.flushIndex()
    assert.deepEqual(await store.putShards([b]), { writtenCount: 1, existingCount: 0 }, `seed ${seed}: the second is looked up, not taken for a re-put`)
    await assertReadsBack(store, [a, b])
    await store.stop()
    store = await reopen(dir, {})
    try {
      await assertReadsBack(store, [a, b])
      assert.deepEqual(await store.putShards([b, a]), { writtenCount: 0, existingCount: 2 })
      assert.equal(await store.deleteShards([a.header]), 1)
      assert.deepEqual(await store.hasShards([a.header, b.header]), [false, true])
      await assertReadsBack(store, [b])
    } finally {
      await store.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('SIGKILL while puts and index-worker flushes run: after a restart every acknowledged shard reads back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-kill-'))
  try {
    const child = spawn(process.execPath, [fileURLToPath(new URL('./segment-store-kill.fixture.js', import.meta.url)), dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
    let acked = -1
    let text = ''
    // Kill once enough batches are acknowledged that flushes and segment rolls have happened.
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        text += chunk.toString()
        const lines = text.split('\n')
        text = lines.pop() ?? ''
        for (const line of lines) acked = Number(line.split(' ')[1])
        if (acked >= 60) {
          child.kill('SIGKILL')
          resolve()
        }
      })
      void exited.then(() => reject(new Error(`the put loop exited after ${acked + 1} batches before it was killed`)))
    })
    assert.equal(await exited, 'SIGKILL')
    const store = await reopen(dir)
    try {
      for (let n = 0; n <= acked; n++) await assertReadsBack(store, killTestBatch(n))
      assert.ok((await store.stats()).shardCount >= (acked + 1) * 8, 'the index counts every acknowledged shard')
    } finally {
      await store.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a synchronous flush waits for the worker: then the index holds every shard, deletes see them, and a re-put in flight keeps its newer time', async () => {
  let clockMs = 1_000
  await withStore({ indexFlushRecords: 4, indexFlushIntervalMs: 3_600_000, nowMs: () => clockMs }, async (store) => {
    const shards = Array.from({ length: 12 }, (_, i) => fixtureShard(i, 3, 512))
    await store.putShards(shards.slice(0, 4))
    await store.putShards(shards.slice(4, 8)) // hands the first four to the worker
    clockMs = 2_000
    // Likely still in flight: the re-put must refresh the row the worker commits with the old time.
    assert.deepEqual(await store.putShards([shards[0]!]), { writtenCount: 0, existingCount: 1 })
    await store.putShards(shards.slice(8, 12))
    store.flushIndex()
    for (const s of shards) assert.ok(store.index.lookup(s.header), `shard ${s.header.index} is indexed after flushIndex`)
    assert.equal(store.index.lookup(shards[0]!.header)!.lastPutMs, 2_000)
    assert.equal(await store.deleteShards(shards.slice(0, 2).map((s) => s.header), { lastPutBeforeUnixMs: 1_500 }), 1, 'the re-put shard is kept')
    assert.equal((await store.stats()).shardCount, 11)
  })
})

test('cached read locations never outlive their rows: delete, bit rot, repair put and compaction after the shards were read', async () => {
  // Room for every shard: an eviction must not hide a stale entry.
  await withStore({ segmentSizeBytes: 32 * 1024, compactionLiveRatio: 0.5, locationCacheEntries: 64 }, async (store) => {
    const shards = Array.from({ length: 40 }, (_, i) => fixtureShard(i, 2, 3000))
    for (let i = 0; i < shards.length; i += 8) await store.putShards(shards.slice(i, i + 8))
    await assertReadsBack(store, shards) // fills the cache
    // Delete: a cached shard is gone, not read from its old place.
    const deleted = shards[39] as Shard
    assert.equal(await store.deleteShards([deleted.header]), 1)
    await assert.rejects(store.getShard(deleted.header), { name: 'ShardNotFoundError' })
    // Bit rot under a cached location: still verified, then marked; a repair put replaces it.
    const victim = shards[38] as Shard
    store.flushIndex()
    const row = store.index.lookup(victim.header)!
    const fh = await open(store.segments.get(row.segment)!.path, 'r+')
    const at = row.offset + row.length - 10
    const one = Buffer.alloc(1)
    await fh.read(one, 0, 1, at)
    await fh.write(Buffer.from([one[0]! ^ 0x01]), 0, 1, at)
    await fh.close()
    await assert.rejects(store.getShard(victim.header), { name: 'ShardCorruptError' })
    await assert.rejects(store.getShard(victim.header), { name: 'ShardCorruptError' }, 'stays corrupt')
    assert.deepEqual(await store.putShards([victim]), { writtenCount: 1, existingCount: 0 })
    await assertReadsBack(store, [victim])
    // Compaction moves cached shards to a new segment and unlinks the old one.
    const dead = shards.slice(0, 30).filter((_, i) => i % 4 !== 0)
    await store.deleteShards(dead.map((s) => s.header))
    const live = shards.filter((s) => !dead.includes(s) && s !== deleted)
    await assertReadsBack(store, live)
    let compacted = 0
    while (await store.compactOnce()) compacted += 1
    assert.ok(compacted >= 1, `compacted ${compacted} segments`)
    await assertReadsBack(store, live)
  })
})

test('a store whose index is still version 1 (rows keyed by CID) migrates at start: every shard reads, lists, deletes and compacts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-v1-'))
  const init = { segmentSizeBytes: 16 * 1024, compactionLiveRatio: 0.5 }
  try {
    let store = await reopen(dir, init)
    const shards = Array.from({ length: 40 }, (_, i) => fixtureShard(i, i % 6, 1024))
    for (let i = 0; i < shards.length; i += 8) await store.putShards(shards.slice(i, i + 8))
    assert.ok(store.segments.size > 2, 'several segments, so the migration keeps rows apart by segment')
    await store.stop()
    // Rewrite the index into the version-1 layout, as a store of the previous release left it.
    const db = new Database(join(dir, 'index.sqlite'))
    db.exec(`
      CREATE TABLE shards_v1 (cid BLOB NOT NULL, idx INTEGER NOT NULL, segment INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
        last_put_ms INTEGER NOT NULL, corrupt INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cid, idx)) WITHOUT ROWID;
      INSERT INTO shards_v1 SELECT cid, idx, loc / 4294967296, loc % 4294967296, length, last_put_ms, corrupt FROM shards;
      DROP TABLE shards;
      ALTER TABLE shards_v1 RENAME TO shards;
      CREATE INDEX shards_by_segment ON shards (segment, offset);
      UPDATE meta SET value = '1' WHERE key = 'schema_version';
    `)
    db.close()
    store = await reopen(dir, init)
    try {
      await assertReadsBack(store, shards)
      assert.deepEqual(await store.putShards(shards), { writtenCount: 0, existingCount: shards.length }, 're-puts find every migrated row')
      const listed = (await store.listShards({ pageSize: 100 })).shards
      assert.equal(listed.length, shards.length)
      assert.equal(await store.deleteShards(shards.slice(0, 30).map((s) => s.header)), 30)
      let compacted = 0
      while (await store.compactOnce()) compacted += 1
      assert.ok(compacted > 0, 'mostly-dead migrated segments are compacted')
      await assertReadsBack(store, shards.slice(30))
      assert.deepEqual(await store.hasShards(shards.slice(0, 2).map((s) => s.header)), [false, false])
    } finally {
      await store.stop()
    }
    store = await reopen(dir, init)
    try {
      await assertReadsBack(store, shards.slice(30))
      assert.equal((await store.stats()).shardCount, 10)
    } finally {
      await store.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('chunkShards returns every local shard of one chunk in listing order, waiting and indexed, corrupt ones flagged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-store-'))
  try {
    const store = await reopen(dir, {})
    const later = [fixtureShard(7, 5, 256), fixtureShard(7, 0, 256)]
    await store.putShards([fixtureShard(7, 3, 256), fixtureShard(8, 3, 256)])
    store.flushIndex()
    await store.putShards(later)
    const copies = await store.chunkShards(fixtureCid('chunk-7'))
    assert.deepEqual(copies.map((c) => c.address.index), [3, 5, 0], 'put order, the waiting records included')
    const positions = copies.map((c) => c.position as number)
    assert.deepEqual(positions, [...positions].sort((a, b) => a - b))
    const listed = (await store.listShards()).shards.filter((s) => Buffer.from(s.address.chunkCid).equals(Buffer.from(fixtureCid('chunk-7'))))
    assert.deepEqual(listed.map((s) => s.position), positions, 'the same positions as the listing')
    assert.deepEqual(await store.chunkShards(fixtureCid('chunk-9')), [])
    store.recordCorrupt(store.index.lookup(later[0]!.header)!, new Error('marked by the test'))
    assert.deepEqual((await store.chunkShards(fixtureCid('chunk-7'))).map((c) => c.corrupt), [false, true, false])
    await assert.rejects(store.chunkShards(new Uint8Array([1, 2, 3])), { name: 'ShardFormatError' })
    await store.stop()
    await assert.rejects(store.chunkShards(fixtureCid('chunk-7')), { name: 'ShuttingDownError' })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a CID-prefix listing filters a bounded window per call: short and empty pages carry a token, and the walk finds every match once', async () => {
  await withStore({ listScanRowsMax: 4 }, async (store) => {
    // Chunk 5's three shards lie apart, among 27 others, so several windows hold none of them.
    const shards = Array.from({ length: 30 }, (_, i) => fixtureShard(i % 10 === 5 ? 5 : 100 + i, i % 10 === 5 ? i / 10 - 0.5 : 0, 64))
    await store.putShards(shards)
    const prefix = fixtureCid('chunk-5')
    const found: number[] = []
    const pageSizes: number[] = []
    let token: string | undefined
    do {
      const page = await store.listShards({ cidPrefix: prefix, pageSize: 2, ...(token === undefined ? {} : { pageToken: token }) })
      pageSizes.push(page.shards.length)
      for (const s of page.shards) {
        assert.ok(Buffer.from(s.address.chunkCid).equals(Buffer.from(prefix)))
        found.push(s.address.index)
      }
      token = page.nextPageToken
    } while (token !== undefined && pageSizes.length < 100)
    assert.deepEqual(found, [0, 1, 2])
    assert.ok(pageSizes.includes(0), `empty pages with a token: ${pageSizes.join(',')}`)
    assert.ok(pageSizes.length >= 30 / 4, `each call scanned at most 4 rows: ${pageSizes.length} calls`)
    // Without a prefix the window does not apply.
    assert.equal((await store.listShards({ pageSize: 100 })).shards.length, 30)
  })
})

test('a store out of segment ids refuses the put that needs a new segment with DataDirError and keeps what it holds', async () => {
  await withStore({ segmentSizeBytes: 16 * 1024 }, async (store) => {
    const first = fixtureShard(1, 0, 16 * 1024)
    await store.putShards([first])
    // Ids at the limit would make locations (segment × 2^32 + offset) inexact numbers.
    store.nextSegmentId = SEGMENT_ID_LIMIT
    await assert.rejects(store.putShards([fixtureShard(2, 0, 16 * 1024)]), { name: 'DataDirError' })
    await assertReadsBack(store, [first])
  })
})
