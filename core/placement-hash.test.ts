import { test } from 'node:test'
import assert from 'node:assert/strict'
import { xxhash64 } from 'hash-wasm'
import { hrwScore, hrwScoreAbove, lnUnit, xxh64 } from './placement-hash.js'

const SEED = 0x5eed_0004

/** SplitMix32-style generator: fixed seed, so every run checks the same inputs. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    return (z ^ (z >>> 16)) >>> 0
  }
}

function hex(out: Uint32Array): string {
  return (out[0] as number).toString(16).padStart(8, '0') + (out[1] as number).toString(16).padStart(8, '0')
}

test('xxh64 is bit-exact with the reference xxHash for every tail shape and seed', async () => {
  const next = rng(SEED)
  for (let len = 0; len <= 100; len++) {
    const bytes = Uint8Array.from({ length: len }, () => next() & 0xff)
    for (const [seedHi, seedLo] of [[0, 0], [next(), next()]] as const) {
      const expected = await xxhash64(bytes, seedLo, seedHi)
      assert.equal(hex(xxh64(bytes, seedHi, seedLo)), expected, `len ${len} seed ${seedHi}:${seedLo} (rng seed ${SEED})`)
    }
  }
})

test('xxh64 known answers are pinned', () => {
  assert.equal(hex(xxh64(new Uint8Array(0))), 'ef46db3751d8e999')
  assert.equal(hex(xxh64(Uint8Array.from({ length: 36 }, (_, i) => i))), 'dde0ef85e3aef05c')
})

test('lnUnit agrees with Math.log to within one ulp across the whole range', () => {
  const next = rng(SEED + 1)
  for (let i = 0; i < 200_000; i++) {
    // Vary the magnitude too, so small u (long runs of leading zeros) are covered.
    const nHi = (next() & 0xfffff) >>> (next() % 21)
    const nLo = nHi === 0 && i % 2 === 0 ? next() >>> (next() % 32) : next()
    const u = (nHi * 2 ** 32 + nLo + 0.5) * 2 ** -52
    const expected = Math.log(u)
    const actual = lnUnit(nHi * 2 ** 32 + nLo)
    assert.ok(Math.abs(actual - expected) <= Math.abs(expected) * 2 ** -52, `n=${nHi}:${nLo} ${actual} vs ${expected} (seed ${SEED + 1})`)
  }
  assert.equal(lnUnit(0), -36.7368005696771)
  assert.equal(lnUnit(2 ** 52 - 1), -1.1102230246251565e-16)
})

test('hrwScoreAbove prunes only members whose full score is below the floor', () => {
  const next = rng(SEED + 2)
  let pruned = 0
  for (let i = 0; i < 100_000; i++) {
    const args = [next(), next(), next(), next()] as const
    const weight = 0.5 + (next() % 64)
    const full = hrwScore(...args, weight)
    // Floors near the score exercise the margin; far ones exercise pruning.
    const floor = i % 2 === 0 ? full * (1 + ((next() % 2001) - 1000) * 1e-15) : (next() % 1000) * 0.5
    const fast = hrwScoreAbove(...args, weight, floor)
    if (fast === -1) {
      pruned++
      assert.ok(full < floor, `pruned a score ${full} not below floor ${floor} (seed ${SEED + 2})`)
    } else {
      assert.equal(fast, full)
    }
  }
  assert.ok(pruned > 10_000, `pruning should skip most losers, skipped ${pruned}`)
})

test('hrwScore is positive and grows with weight for the same hash', () => {
  const a = hrwScore(1, 2, 3, 4, 1)
  const b = hrwScore(1, 2, 3, 4, 2)
  assert.ok(a > 0)
  assert.equal(b, 2 * a)
})
