import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { BLOOM_FORMAT_VERSION, BloomFilter, bloomSize, murmur3 } from './bloom-filter.js'

/** Deterministic 36-byte keys shaped like binary sha2-256 CIDs: a prefix, then 32 bytes of mulberry32 seeded by (seed, i). */
function key(seed: number, i: number): Uint8Array {
  const out = new Uint8Array(36)
  out.set([0x01, 0x55, 0x12, 0x20])
  let a = (Math.imul(seed, 0x9e3779b1) ^ i) >>> 0
  for (let j = 4; j < 36; j += 4) {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), a | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    new DataView(out.buffer).setUint32(j, (x ^ (x >>> 14)) >>> 0)
  }
  return out
}

const SALT_A = Uint8Array.from({ length: 16 }, (_, i) => i + 1)
const SALT_B = Uint8Array.from({ length: 16 }, (_, i) => 200 - i)

describe('bloom filter', () => {
  it('sizes for 1e-4 at about 19.2 bits and 13 hashes per key', () => {
    const { bitCount, hashCount } = bloomSize(1_000_000, 1e-4)
    assert.ok(bitCount >= 19_170_000 && bitCount <= 19_180_000, String(bitCount))
    assert.equal(hashCount, 13)
  })

  it('murmur3 matches the reference vectors', () => {
    const enc = (s: string) => new TextEncoder().encode(s)
    assert.equal(murmur3(enc(''), 0), 0)
    assert.equal(murmur3(enc(''), 1), 0x514e28b7)
    assert.equal(murmur3(enc('hello'), 0), 0x248bfa47)
    assert.equal(murmur3(enc('The quick brown fox jumps over the lazy dog'), 0), 0x2e4ff723)
  })

  it('never forgets a key, and its false-positive rate stays near the 1e-4 target (seed 7)', () => {
    const seed = 7
    const n = 10_000
    const filter = BloomFilter.create(n, 1e-4, SALT_A)
    for (let i = 0; i < n; i++) filter.add(key(seed, i))
    for (let i = 0; i < n; i++) assert.ok(filter.has(key(seed, i)), `seed ${seed}: key ${i} forgotten`)
    const probes = 100_000
    let fp = 0
    for (let i = n; i < n + probes; i++) if (filter.has(key(seed, i))) fp++
    // Expected about 10; 40 is far beyond what chance gives (Poisson tail < 1e-11).
    assert.ok(fp <= 40, `seed ${seed}: ${fp} false positives in ${probes} probes`)
    assert.ok(filter.estimatedFalsePositiveRate() < 2e-4)
  })

  it('a different salt gives a different set of false positives', () => {
    const n = 2_000
    const build = (salt: Uint8Array) => {
      // A loose filter (5%), so false positives are plentiful enough to compare.
      const f = BloomFilter.create(n, 0.05, salt)
      for (let i = 0; i < n; i++) f.add(key(3, i))
      const hits = new Set<number>()
      for (let i = n; i < n + 20_000; i++) if (f.has(key(3, i))) hits.add(i)
      return hits
    }
    const a = build(SALT_A)
    const b = build(SALT_B)
    const common = [...a].filter((i) => b.has(i)).length
    assert.ok(a.size > 300 && b.size > 300, `${a.size} and ${b.size} false positives`)
    assert.ok(common < a.size / 4, `${common} of ${a.size} false positives repeat under another salt`)
  })

  it('survives its wire form and refuses malformed parts with InvalidArgumentError', () => {
    const f = BloomFilter.create(100, 1e-4, SALT_A)
    for (let i = 0; i < 100; i++) f.add(key(1, i))
    const back = BloomFilter.from(structuredClone(f.parts()))
    for (let i = 0; i < 100; i++) assert.ok(back.has(key(1, i)))
    const good = f.parts()
    const bad = [
      { ...good, version: BLOOM_FORMAT_VERSION + 1 },
      { ...good, salt: new Uint8Array(4) },
      { ...good, hashCount: 0 },
      { ...good, hashCount: 33 },
      { ...good, bits: new Uint8Array(4) },
    ]
    for (const parts of bad) assert.throws(() => BloomFilter.from(parts), { name: 'InvalidArgumentError' })
    assert.throws(() => bloomSize(-1, 1e-4), { name: 'InvalidArgumentError' })
    assert.throws(() => bloomSize(10, 0), { name: 'InvalidArgumentError' })
  })
})
