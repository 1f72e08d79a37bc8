import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { addressHash, LocationCache, SegmentIndex, WaitingRecords, type WaitingRecord } from './segment-index.js'
import { fixtureCid } from './fixtures.js'
import { xorshift32 } from '../core/seeded-random.js'

/** A 36-byte CID-shaped key from a seeded xorshift32 stream. */
function seededCids(seed: number, count: number): Uint8Array[] {
  const next = xorshift32(seed)
  return Array.from({ length: count }, () => {
    const cid = new Uint8Array(36)
    cid.set([0x01, 0x55, 0x12, 0x20])
    for (let i = 4; i < cid.length; i++) cid[i] = next() & 0xff
    return cid
  })
}

test('commitWrites: a retried flush changes nothing, a replacing record takes the old row and its live bytes, and a connection without the address map refuses to replace', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-index-'))
  const path = join(dir, 'index.sqlite')
  const index = new SegmentIndex(path)
  const worker = new SegmentIndex(path, { lockFile: false, addressMap: false })
  try {
    index.addSegment(1, 'active')
    const cid = fixtureCid('replace')
    const hash = addressHash(cid, 2)
    const first = { cid, index: 2, hash, offsetBytes: 0, lengthBytes: 100, lastPutMs: 1, fresh: true }
    // The worker appends fresh rows; the store tells its own connection (noteCommitted).
    assert.deepEqual(worker.commitWrites(1, 100, [first]), { count: 0, bytes: 0, corrupt: 0 })
    index.noteCommitted(1, [first])
    assert.deepEqual(worker.commitWrites(1, 100, [first]), { count: 0, bytes: 0, corrupt: 0 }, 'a retried flush')
    assert.deepEqual(index.segments()[0], { id: 1, state: 'active', sizeBytes: 100, liveBytes: 100 }, 'live bytes counted once')
    const row = index.lookup({ chunkCid: cid, index: 2 })
    assert.ok(row !== undefined && index.markCorrupt(row))
    const repair = { cid, index: 2, hash, offsetBytes: 100, lengthBytes: 80, lastPutMs: 2 }
    assert.throws(() => worker.commitWrites(1, 180, [repair]), { name: 'DataDirError' })
    assert.deepEqual(index.commitWrites(1, 180, [repair]), { count: 1, bytes: 100, corrupt: 1 })
    const after = index.lookup({ chunkCid: cid, index: 2 })
    assert.deepEqual([after?.offset, after?.lastPutMs, after?.corrupt], [100, 2, false])
    assert.deepEqual(index.segments()[0], { id: 1, state: 'active', sizeBytes: 180, liveBytes: 80 })
    assert.equal(index.list(undefined, undefined, 10, 10).rows.length, 1, 'the corrupt row is gone')
    assert.equal(index.lookup({ chunkCid: cid, index: 3 }), undefined, 'another index of the same CID')
  } finally {
    worker.close()
    index.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('a version-1 index (rows keyed by CID) is migrated into location order, and a newer version is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-index-'))
  const path = join(dir, 'index.sqlite')
  const cids = seededCids(0x1d, 50)
  try {
    const old = new Database(path)
    old.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE segments (id INTEGER PRIMARY KEY, state TEXT NOT NULL, size_bytes INTEGER NOT NULL, live_bytes INTEGER NOT NULL);
      CREATE TABLE shards (cid BLOB NOT NULL, idx INTEGER NOT NULL, segment INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
        last_put_ms INTEGER NOT NULL, corrupt INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cid, idx)) WITHOUT ROWID;
      CREATE INDEX shards_by_segment ON shards (segment, offset);
      INSERT INTO meta VALUES ('schema_version', '1');
      INSERT INTO segments VALUES (1, 'sealed', 5000, 2500), (2, 'active', 2500, 2500);
    `)
    const insert = old.prepare('INSERT INTO shards VALUES (?, ?, ?, ?, 100, ?, ?)')
    cids.forEach((cid, i) => insert.run(cid, i % 6, i < 25 ? 1 : 2, (i % 25) * 100, 1000 + i, i === 7 ? 1 : 0))
    old.close()
    const index = new SegmentIndex(path)
    try {
      cids.forEach((cid, i) => {
        const row = index.lookup({ chunkCid: cid, index: i % 6 })
        assert.deepEqual([row?.segment, row?.offset, row?.lastPutMs, row?.corrupt], [i < 25 ? 1 : 2, (i % 25) * 100, 1000 + i, i === 7])
      })
      const listed = index.list(undefined, undefined, 100, 100).rows.map((r) => [r.segment, r.offset])
      assert.deepEqual(listed, cids.map((_, i) => [i < 25 ? 1 : 2, (i % 25) * 100]), 'location order')
      assert.equal(index.liveRows(2).length, 25)
    } finally {
      index.close()
    }
    const newer = new Database(path)
    newer.prepare("UPDATE meta SET value = '3' WHERE key = 'schema_version'").run()
    newer.close()
    assert.throws(() => new SegmentIndex(path), { name: 'DataDirError' })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the location cache holds at most its bound, drops the oldest first, and a hash collision is a miss', () => {
  const cids = seededCids(11, 5)
  const cache = new LocationCache(3)
  const row = (i: number) => ({ cid: Buffer.from(cids[i]!), idx: 1, segment: 1, offset: i * 100, length: 100, lastPutMs: 0, corrupt: false })
  for (let i = 0; i < 4; i++) cache.set(addressHash(cids[i]!, 1), row(i))
  assert.equal(cache.size, 3)
  assert.equal(cache.get(addressHash(cids[0]!, 1), cids[0]!, 1), undefined, 'the oldest went')
  assert.equal(cache.get(addressHash(cids[3]!, 1), cids[3]!, 1)?.offset, 300)
  // Same hash slot, another address: not this shard's location.
  assert.equal(cache.get(addressHash(cids[3]!, 1), cids[4]!, 1), undefined)
  assert.equal(cache.get(addressHash(cids[3]!, 1), cids[3]!, 2), undefined)
  assert.equal(new LocationCache(0).size, 0)
  const off = new LocationCache(0)
  off.set(addressHash(cids[0]!, 1), row(0))
  assert.equal(off.size, 0, 'a zero bound disables it')
})

test('waiting records sharing one address hash are told apart by address, and delete removes exactly the record given', () => {
  const cids = seededCids(23, 4)
  // Forced onto one hash: the chain, not the map, has to separate them.
  const record = (i: number, index = 0): WaitingRecord => ({ cid: cids[i]!, index, offsetBytes: i * 10, lengthBytes: 10, lastPutMs: 0, fresh: true, hash: 7, sentLastPutMs: 0, next: undefined })
  const waiting = new WaitingRecords()
  const rs = [record(0), record(1), record(2), record(0, 1)]
  for (const r of rs) waiting.add(r)
  assert.equal(waiting.size, 4)
  rs.forEach((r) => assert.equal(waiting.get(7, r.cid, r.index), r))
  assert.equal(waiting.get(7, cids[3]!, 0), undefined, 'same hash, other address')
  assert.equal(waiting.get(8, cids[0]!, 0), undefined, 'other hash')
  // Middle, head and tail of the chain, then a record no longer held.
  for (const r of [rs[1]!, rs[3]!, rs[0]!]) {
    assert.equal(waiting.delete(r), true)
    assert.equal(waiting.get(7, r.cid, r.index), undefined)
  }
  assert.equal(waiting.delete(rs[1]!), false)
  assert.equal(waiting.delete(record(0)), false, 'an equal address is not the same record')
  assert.deepEqual(waiting.toArray(), [rs[2]])
  waiting.clear()
  assert.equal(waiting.size, 0)
  assert.equal(waiting.get(7, cids[2]!, 0), undefined)
})
