import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { createCodec, type ErasureCodec } from './codec.js'
import { tsKernel, type GfKernel } from './kernel.js'
import { loadWasmKernel } from './wasm-kernel.js'
import { gfInv, gfMul } from './gf256.js'

/** Deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomBytes(next: () => number, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => Math.floor(next() * 256))
}

/** Every subset of {0..n-1} with at most `max` members. */
function* subsetsUpTo(n: number, max: number, from = 0, chosen: number[] = []): Generator<number[]> {
  yield chosen
  if (chosen.length === max) return
  for (let i = from; i < n; i++) yield* subsetsUpTo(n, max, i + 1, [...chosen, i])
}

function countSubsets(n: number, max: number): number {
  let total = 0
  let binom = 1
  for (let r = 0; r <= max; r++) {
    total += binom
    binom = (binom * (n - r)) / (r + 1)
  }
  return total
}

/** Erasure patterns: all of them when few, else a seeded sample biased to exactly m losses. */
function erasurePatterns(n: number, m: number, next: () => number): number[][] {
  if (countSubsets(n, m) <= 1200) return [...subsetsUpTo(n, m)]
  const patterns: number[][] = []
  for (let p = 0; p < 300; p++) {
    const count = p % 3 === 0 ? Math.floor(next() * (m + 1)) : m
    patterns.push(pick(n, count, next))
  }
  return patterns
}

function pick(n: number, count: number, next: () => number): number[] {
  const all = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[all[i], all[j]] = [all[j] as number, all[i] as number]
  }
  return all.slice(0, count).sort((a, b) => a - b)
}

function erase(shards: readonly Uint8Array[], lost: readonly number[]): (Uint8Array | undefined)[] {
  return shards.map((s, i) => (lost.includes(i) ? undefined : s))
}

const CONFIGS: [number, number][] = [[1, 0], [1, 2], [4, 2], [8, 3], [10, 4], [16, 16], [31, 1]]

describe('Reed–Solomon codec', () => {
  let wasm: GfKernel
  before(async () => {
    wasm = await loadWasmKernel()
  })

  it('GF(2^8) with 0x11d: 2·0x80 = 0x1d and every nonzero element has an inverse', () => {
    assert.equal(gfMul(2, 0x80), 0x1d)
    for (let a = 1; a < 256; a++) assert.equal(gfMul(a, gfInv(a)), 1, `a=${a}`)
  })

  for (const [k, m] of CONFIGS) {
    for (const kernelName of ['ts', 'wasm-simd'] as const) {
      it(`${k}+${m} (${kernelName}): every pattern of up to m erasures reconstructs the input; m+1 is InsufficientShards`, () => {
        const codec = createCodec({ dataShards: k, parityShards: m }, { kernel: kernelName === 'ts' ? tsKernel : wasm })
        const seed = 1000 * k + m
        const next = rng(seed)
        const chunk = randomBytes(next, 1 + Math.floor(next() * 3000))
        const shards = codec.encode(chunk)
        assert.equal(shards.length, k + m)
        for (const s of shards) assert.equal(s.length, Math.ceil(chunk.length / k))
        for (const lost of erasurePatterns(k + m, m, next)) {
          const rebuilt = codec.reconstruct(erase(shards, lost), chunk.length)
          assert.deepEqual(rebuilt, chunk, `seed=${seed} len=${chunk.length} lost=${lost.join(',')}`)
        }
        const tooMany = pick(k + m, m + 1, next)
        assert.throws(() => codec.reconstruct(erase(shards, tooMany), chunk.length), { name: 'InsufficientShardsError' }, `seed=${seed} lost=${tooMany.join(',')}`)
      })
    }

    it(`${k}+${m}: WASM and TS kernels produce identical shards and identical repairs`, () => {
      const ts = createCodec({ dataShards: k, parityShards: m })
      const simd = createCodec({ dataShards: k, parityShards: m }, { kernel: wasm })
      const seed = 77 + k * 31 + m
      const next = rng(seed)
      for (const length of [0, 1, 31, 32, 33, 1000, 65536, 65537, Math.floor(next() * 200000)]) {
        const chunk = randomBytes(next, length)
        const a = ts.encode(chunk)
        const b = simd.encode(chunk)
        assert.deepEqual(b, a, `seed=${seed} len=${length}`)
        const lost = pick(k + m, m, next)
        const all = Array.from({ length: k + m }, (_, i) => i)
        assert.deepEqual(simd.rebuildShards(erase(a, lost), all), a, `seed=${seed} len=${length} lost=${lost.join(',')}`)
        assert.deepEqual(ts.rebuildShards(erase(a, lost), all), a, `seed=${seed} len=${length} lost=${lost.join(',')}`)
      }
    })
  }

  it('encodeBatch (WASM) equals per-chunk TS encode for mixed lengths, batches larger than one kernel call, and interleaved codecs', () => {
    const seed = 4242
    const next = rng(seed)
    // 3 MiB makes a group on its own (bigger than the kernel's work region); the
    // 64 KiB run is split across calls; odd lengths take the unaligned-stride path.
    const lengths = [65536, 65536, 1000, 0, 65537, 3 << 20, 1, ...Array.from({ length: 50 }, () => 65536), 12345]
    const chunks = lengths.map((n) => randomBytes(next, n))
    for (const [k, m] of [[4, 2], [8, 3], [10, 4], [3, 5]] as [number, number][]) {
      const simd = createCodec({ dataShards: k, parityShards: m }, { kernel: wasm })
      const ts = createCodec({ dataShards: k, parityShards: m })
      const batch = simd.encodeBatch(chunks)
      assert.equal(batch.length, chunks.length)
      batch.forEach((shards, c) => {
        const chunk = chunks[c] as Uint8Array
        assert.deepEqual(shards, ts.encode(chunk), `seed=${seed} ${k}+${m} chunk=${c} len=${chunk.length}`)
        // The transfer contract: one ArrayBuffer per chunk, wholly covered by its k+m shards.
        const size = Math.ceil(chunk.length / k)
        for (const s of shards) assert.equal(s.buffer, shards[0]?.buffer)
        assert.equal(shards[0]?.buffer.byteLength, (k + m) * size)
        // Interleave a repair on the same kernel: it swaps the coefficient tables in linear memory.
        const lost = pick(k + m, m, next)
        assert.deepEqual(simd.reconstruct(erase(shards, lost), chunk.length), chunk, `seed=${seed} ${k}+${m} chunk=${c} lost=${lost.join(',')}`)
      })
    }
    assert.throws(() => createCodec({ dataShards: 2, parityShards: 1 }, { kernel: wasm }).encodeBatch([new Uint8Array(4), 'x' as unknown as Uint8Array]), { name: 'InvalidArgumentError' })
  })

  it('pins the 4+2 parity of a known input, because shards on disk depend on the encoding matrix', () => {
    const codec = createCodec({ dataShards: 4, parityShards: 2 })
    const shards = codec.encode(Uint8Array.from({ length: 8 }, (_, i) => i + 1))
    assert.deepEqual(shards.slice(0, 4).map((s) => [...s]), [[1, 2], [3, 4], [5, 6], [7, 8]])
    const parity = shards.slice(4).map((s) => Buffer.from(s).toString('hex'))
    assert.deepEqual(parity, [expectedParity(0), expectedParity(1)])
  })

  it('rejects invalid k and m with InvalidArgumentError', () => {
    for (const [k, m] of [[0, 2], [-1, 1], [4, -1], [1.5, 1], [4, 29], [33, 0], [Number.NaN, 1]] as [number, number][]) {
      assert.throws(() => createCodec({ dataShards: k, parityShards: m }), { name: 'InvalidArgumentError' }, `${k}+${m}`)
    }
    assert.doesNotThrow(() => createCodec({ dataShards: 16, parityShards: 16 }))
  })

  it('rejects shards of different sizes, a wrong shard count, a mismatched length or index with InvalidShardsError', () => {
    const codec = createCodec({ dataShards: 4, parityShards: 2 })
    const shards: (Uint8Array | undefined)[] = codec.encode(new Uint8Array(100).fill(7))
    assert.throws(() => codec.reconstruct([...shards.slice(0, 5), new Uint8Array(24)], 100), { name: 'InvalidShardsError' })
    assert.throws(() => codec.reconstruct(shards.slice(0, 5), 100), { name: 'InvalidShardsError' })
    assert.throws(() => codec.reconstruct(shards, 101), { name: 'InvalidShardsError' })
    assert.throws(() => codec.reconstruct(shards, -1), { name: 'InvalidShardsError' })
    assert.throws(() => codec.rebuildShards(shards, [6]), { name: 'InvalidShardsError' })
    assert.throws(() => codec.encode('x' as unknown as Uint8Array), { name: 'InvalidArgumentError' })
    assert.deepEqual(codec.reconstruct(shards, 97), new Uint8Array(97).fill(7))
  })

  it('rebuilds a lost parity shard from data shards alone (repair)', () => {
    const codec: ErasureCodec = createCodec({ dataShards: 8, parityShards: 3 }, { kernel: wasm })
    const shards = codec.encode(randomBytes(rng(5), 4096))
    const [p1, d0] = codec.rebuildShards(erase(shards, [0, 9]), [9, 0])
    assert.deepEqual(p1, shards[9])
    assert.deepEqual(d0, shards[0])
  })
})

/**
 * Independent computation of the 4+2 parity for data 01 02 | 03 04 | 05 06 | 07 08:
 * parity row i is Σ_j d_j / ((4 + i) ⊕ j), straight from the definition.
 */
function expectedParity(row: number): string {
  const data = [[1, 2], [3, 4], [5, 6], [7, 8]]
  const out = [0, 1].map((b) => data.reduce((acc, d, j) => acc ^ gfMul(d[b] as number, gfInv((4 + row) ^ j)), 0))
  return Buffer.from(out).toString('hex')
}
