import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AddressFilter, addressHash, LocationCache, SegmentIndex, WaitingRecords, type WaitingRecord } from './segment-index.js'
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

test('the address filter never forgets an address, across layers, and rarely claims an absent one', () => {
  const seed = 0x5eed
  const added = seededCids(seed, 5000)
  const absent = seededCids(seed + 1, 20_000)
  // 1024 addresses per first layer: 5000 need three more layers.
  const filter = new AddressFilter(1024)
  added.forEach((cid, i) => filter.add(cid, i % 32))
  added.forEach((cid, i) => assert.ok(filter.mayContain(cid, i % 32), `seed ${seed}: address ${i} was added`))
  // The same CID under another index is another address.
  const otherIndex = added.filter((cid, i) => filter.mayContain(cid, (i % 32) + 100)).length
  const falsePositives = absent.filter((cid) => filter.mayContain(cid, 0)).length
  assert.ok(falsePositives < absent.length * 0.05, `seed ${seed}: ${falsePositives} false positives of ${absent.length}`)
  assert.ok(otherIndex < added.length * 0.05, `seed ${seed}: ${otherIndex} false positives by index`)
})

test('commitWrites of a record believed fresh replaces a row that exists after all, keeping live bytes right', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-index-'))
  const index = new SegmentIndex(join(dir, 'index.sqlite'))
  try {
    index.addSegment(1, 'active')
    const cid = fixtureCid('fresh-conflict')
    assert.deepEqual(index.commitWrites(1, 100, [{ cid, index: 2, offsetBytes: 0, lengthBytes: 100, lastPutMs: 1, fresh: true }]), { count: 0, bytes: 0, corrupt: 0 })
    const again = index.commitWrites(1, 180, [{ cid, index: 2, offsetBytes: 100, lengthBytes: 80, lastPutMs: 2, fresh: true }])
    assert.deepEqual(again, { count: 1, bytes: 100, corrupt: 0 })
    const row = index.lookup({ chunkCid: cid, index: 2 })
    assert.equal(row?.offset, 100)
    assert.equal(row?.lastPutMs, 2)
    assert.deepEqual(index.segments()[0], { id: 1, state: 'active', sizeBytes: 180, liveBytes: 80 })
  } finally {
    index.close()
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
