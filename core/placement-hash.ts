/**
 * The hashing under placement: XXH64 over bytes, a 64-bit finalizer to derive
 * per-(chunk, slot, member) values, and a natural logarithm of the derived
 * uniform.
 *
 * Every reader and writer in the cluster must compute the same placement, on
 * every CPU architecture and Node version, forever. So nothing here calls
 * `Math.log` (ECMAScript leaves its last bit to the implementation, and a
 * C library built with fused multiply-add contraction on arm64 may round
 * differently from x64) and nothing uses BigInt (far too slow for a per-chunk
 * path). All arithmetic is on 32-bit halves with `Math.imul` and IEEE basic
 * operations, whose results the language fixes exactly.
 *
 * 64-bit values travel as (hi, lo) pairs of unsigned 32-bit numbers. To avoid
 * allocating on the hot path, the 64-bit helpers return their result in the
 * module register `R` ([hi, lo]); callers copy them out at once.
 */

// An array of doubles, not two `let`s: V8 boxes every uint32 above 2^31
// stored in a module variable as a heap number, which made hashing several
// times slower. Starting with non-integers keeps its elements unboxed doubles.
const R: [number, number] = [0.5, 0.5]

// The XXH64 primes, split into 32-bit halves.
const P1_HI = 0x9e3779b1
const P1_LO = 0x85ebca87
const P2_HI = 0xc2b2ae3d
const P2_LO = 0x27d4eb4f
const P3_HI = 0x165667b1
const P3_LO = 0x9e3779f9
const P4_HI = 0x85ebca77
const P4_LO = 0xc2b2ae63
const P5_HI = 0x27d4eb2f
const P5_LO = 0x165667c5

/** High 32 bits of the 64-bit product of two unsigned 32-bit numbers. */
function mulHi32(a: number, b: number): number {
  const a0 = a & 0xffff
  const a1 = a >>> 16
  const b0 = b & 0xffff
  const b1 = b >>> 16
  const m1 = a1 * b0
  const m2 = a0 * b1
  const mid = ((a0 * b0) >>> 16) + (m1 & 0xffff) + (m2 & 0xffff)
  return (a1 * b1 + (m1 >>> 16) + (m2 >>> 16) + (mid >>> 16)) >>> 0
}

/** (aHi, aLo) * (bHi, bLo) mod 2^64 → R[0], R[1]. */
function mul64(aHi: number, aLo: number, bHi: number, bLo: number): void {
  R[0] = (mulHi32(aLo, bLo) + Math.imul(aHi, bLo) + Math.imul(aLo, bHi)) >>> 0
  R[1] = Math.imul(aLo, bLo) >>> 0
}

/** (aHi, aLo) + (bHi, bLo) mod 2^64 → R[0], R[1]. */
function add64(aHi: number, aLo: number, bHi: number, bLo: number): void {
  const lo = aLo + bLo
  R[1] = lo >>> 0
  R[0] = (aHi + bHi + (lo > 0xffffffff ? 1 : 0)) >>> 0
}

/** Rotate left by 0 < n < 64 → R[0], R[1]. */
function rotl64(hi: number, lo: number, n: number): void {
  if (n >= 32) {
    const t = hi
    hi = lo
    lo = t
    n -= 32
  }
  if (n === 0) {
    R[0] = hi >>> 0
    R[1] = lo >>> 0
    return
  }
  R[0] = ((hi << n) | (lo >>> (32 - n))) >>> 0
  R[1] = ((lo << n) | (hi >>> (32 - n))) >>> 0
}

function readU32LE(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] as number) | ((bytes[offset + 1] as number) << 8) | ((bytes[offset + 2] as number) << 16) | ((bytes[offset + 3] as number) << 24)) >>> 0
}

/** XXH64 round: acc = rotl(acc + input * P2, 31) * P1 → R[0], R[1]. */
function xxRound(accHi: number, accLo: number, inHi: number, inLo: number): void {
  mul64(inHi, inLo, P2_HI, P2_LO)
  add64(accHi, accLo, R[0], R[1])
  rotl64(R[0], R[1], 31)
  mul64(R[0], R[1], P1_HI, P1_LO)
}

/** XXH64 merge round: acc = (acc ^ round(0, val)) * P1 + P4 → R[0], R[1]. */
function xxMerge(accHi: number, accLo: number, valHi: number, valLo: number): void {
  xxRound(0, 0, valHi, valLo)
  mul64((accHi ^ R[0]) >>> 0, (accLo ^ R[1]) >>> 0, P1_HI, P1_LO)
  add64(R[0], R[1], P4_HI, P4_LO)
}

/** The four 32-byte-stripe accumulators of XXH64, folded into one state → R[0], R[1]. */
function xxStripes(bytes: Uint8Array, seedHi: number, seedLo: number, end: number): void {
  add64(seedHi, seedLo, P1_HI, P1_LO)
  add64(R[0], R[1], P2_HI, P2_LO)
  let v1h = R[0], v1l = R[1]
  add64(seedHi, seedLo, P2_HI, P2_LO)
  let v2h = R[0], v2l = R[1]
  let v3h = seedHi, v3l = seedLo
  // seed - P1 == seed + (2^64 - P1)
  add64(seedHi, seedLo, ~P1_HI >>> 0, (~P1_LO + 1) >>> 0)
  let v4h = R[0], v4l = R[1]
  for (let p = 0; p + 32 <= end; p += 32) {
    xxRound(v1h, v1l, readU32LE(bytes, p + 4), readU32LE(bytes, p))
    v1h = R[0]; v1l = R[1]
    xxRound(v2h, v2l, readU32LE(bytes, p + 12), readU32LE(bytes, p + 8))
    v2h = R[0]; v2l = R[1]
    xxRound(v3h, v3l, readU32LE(bytes, p + 20), readU32LE(bytes, p + 16))
    v3h = R[0]; v3l = R[1]
    xxRound(v4h, v4l, readU32LE(bytes, p + 28), readU32LE(bytes, p + 24))
    v4h = R[0]; v4l = R[1]
  }
  rotl64(v1h, v1l, 1)
  let hh = R[0], hl = R[1]
  rotl64(v2h, v2l, 7)
  add64(hh, hl, R[0], R[1]); hh = R[0]; hl = R[1]
  rotl64(v3h, v3l, 12)
  add64(hh, hl, R[0], R[1]); hh = R[0]; hl = R[1]
  rotl64(v4h, v4l, 18)
  add64(hh, hl, R[0], R[1])
  xxMerge(R[0], R[1], v1h, v1l)
  xxMerge(R[0], R[1], v2h, v2l)
  xxMerge(R[0], R[1], v3h, v3l)
  xxMerge(R[0], R[1], v4h, v4l)
}

/** XXH64's tail (the bytes after the last full stripe) and final avalanche → R[0], R[1]. */
function xxTail(bytes: Uint8Array, start: number, hHi: number, hLo: number): void {
  let p = start
  const end = bytes.length
  for (; p + 8 <= end; p += 8) {
    xxRound(0, 0, readU32LE(bytes, p + 4), readU32LE(bytes, p))
    rotl64((hHi ^ R[0]) >>> 0, (hLo ^ R[1]) >>> 0, 27)
    mul64(R[0], R[1], P1_HI, P1_LO)
    add64(R[0], R[1], P4_HI, P4_LO)
    hHi = R[0]; hLo = R[1]
  }
  if (p + 4 <= end) {
    mul64(0, readU32LE(bytes, p), P1_HI, P1_LO)
    rotl64((hHi ^ R[0]) >>> 0, (hLo ^ R[1]) >>> 0, 23)
    mul64(R[0], R[1], P2_HI, P2_LO)
    add64(R[0], R[1], P3_HI, P3_LO)
    hHi = R[0]; hLo = R[1]
    p += 4
  }
  for (; p < end; p++) {
    mul64(0, bytes[p] as number, P5_HI, P5_LO)
    rotl64((hHi ^ R[0]) >>> 0, (hLo ^ R[1]) >>> 0, 11)
    mul64(R[0], R[1], P1_HI, P1_LO)
    hHi = R[0]; hLo = R[1]
  }
  hLo = (hLo ^ (hHi >>> 1)) >>> 0 // h ^= h >>> 33
  mul64(hHi, hLo, P2_HI, P2_LO)
  hHi = R[0]
  hLo = (R[1] ^ ((R[1] >>> 29) | (R[0] << 3))) >>> 0 // h ^= h >>> 29, low half
  hHi = (hHi ^ (hHi >>> 29)) >>> 0
  mul64(hHi, hLo, P3_HI, P3_LO)
  R[1] = (R[1] ^ R[0]) >>> 0 // h ^= h >>> 32
}

/**
 * XXH64 of `bytes` with a 64-bit seed, as (hi, lo) in `out`.
 * Bit-exact with the reference implementation (the tests check it against
 * hash-wasm's build of xxHash).
 */
export function xxh64(bytes: Uint8Array, seedHi = 0, seedLo = 0, out: Uint32Array = new Uint32Array(2)): Uint32Array {
  const len = bytes.length
  const stripeEnd = len - (len % 32)
  if (len >= 32) {
    xxStripes(bytes, seedHi >>> 0, seedLo >>> 0, stripeEnd)
  } else {
    add64(seedHi >>> 0, seedLo >>> 0, P5_HI, P5_LO)
  }
  // h += len; lengths beyond 2^32 bytes never reach placement.
  add64(R[0], R[1], Math.floor(len / 0x100000000) >>> 0, len >>> 0)
  xxTail(bytes, stripeEnd, R[0], R[1])
  out[0] = R[0]
  out[1] = R[1]
  return out
}

// SplitMix64's finalizer constants (Stafford's "Mix13").
const M1_HI = 0xbf58476d
const M1_LO = 0x1ce4e5b9
const M2_HI = 0x94d049bb
const M2_LO = 0x133111eb

/**
 * The low 32 bits of the high-word step of a 64-bit product: the part of
 * (hi, lo) * (cHi, cLo) mod 2^64 above bit 32.
 */
function mulHiWord(hi: number, lo: number, cHi: number, cLo: number): number {
  return (mulHi32(lo, cLo) + Math.imul(hi, cLo) + Math.imul(lo, cHi)) >>> 0
}

/**
 * SplitMix64's finalizer (z ^= z >>> 30; z *= M1; z ^= z >>> 27; z *= M2;
 * z ^= z >>> 31), a bijection on 64 bits with full avalanche, returning the
 * top 52 bits as an integer-valued double. Written on locals, not on the
 * shared register: this runs once per (slot, member), the innermost loop.
 */
function mixTop52(hi: number, lo: number): number {
  lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0
  hi = (hi ^ (hi >>> 30)) >>> 0
  let h = mulHiWord(hi, lo, M1_HI, M1_LO)
  let l = Math.imul(lo, M1_LO) >>> 0
  lo = (l ^ ((l >>> 27) | (h << 5))) >>> 0
  hi = (h ^ (h >>> 27)) >>> 0
  h = mulHiWord(hi, lo, M2_HI, M2_LO)
  l = Math.imul(lo, M2_LO) >>> 0
  lo = (l ^ ((l >>> 31) | (h << 1))) >>> 0
  hi = (h ^ (h >>> 31)) >>> 0
  return (hi >>> 12) * 0x100000000 + (((hi << 20) | (lo >>> 12)) >>> 0)
}

// The golden-ratio increment of SplitMix64, used to separate slot streams.
const GOLDEN_HI = 0x9e3779b9
const GOLDEN_LO = 0x7f4a7c15

/**
 * The key of placement slot `slot` for a chunk whose XXH64 is (hi, lo):
 * mix64(chunkHash + (slot + 1) * golden), into `out`.
 */
export function slotKey(chunkHi: number, chunkLo: number, slot: number, out: Uint32Array): void {
  mul64(0, slot + 1, GOLDEN_HI, GOLDEN_LO)
  add64(chunkHi, chunkLo, R[0], R[1])
  let hi = R[0]
  let lo = R[1]
  lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0
  hi = (hi ^ (hi >>> 30)) >>> 0
  mul64(hi, lo, M1_HI, M1_LO)
  lo = (R[1] ^ ((R[1] >>> 27) | (R[0] << 5))) >>> 0
  hi = (R[0] ^ (R[0] >>> 27)) >>> 0
  mul64(hi, lo, M2_HI, M2_LO)
  out[0] = (R[0] ^ (R[0] >>> 31)) >>> 0
  out[1] = (R[1] ^ ((R[1] >>> 31) | (R[0] << 1))) >>> 0
}

/**
 * The HRW score of a member for a slot: weight / -ln(u), where u ∈ (0, 1) is
 * (n + 0.5) / 2^52 for n the top 52 bits of mix64(slotKey ^ memberHash); the
 * half step keeps u off 0 and 1. P(score < t) = exp(-weight / t), so the
 * maximum over members lands on each with probability weight / total weight.
 */
export function hrwScore(keyHi: number, keyLo: number, memberHi: number, memberLo: number, weight: number): number {
  return weight / -lnUnit(mixTop52((keyHi ^ memberHi) >>> 0, (keyLo ^ memberLo) >>> 0))
}

// Margin for the cheap bound below: far above the few ulps of rounding in
// either computation, far below any gap that matters for pruning.
const PRUNE_MARGIN = 1 + 2 ** -40

/**
 * {@link hrwScore}, or -1 when the score is certainly below `floor`.
 *
 * Since -ln(u) ≥ 1 - u, the score is at most weight / (1 - u), which costs a
 * division instead of a logarithm; in a scan for the maximum most members fail
 * this bound. Only members that certainly lose are skipped, so the winner (and
 * every tie-break) is exactly what a full scan with hrwScore finds.
 */
export function hrwScoreAbove(keyHi: number, keyLo: number, memberHi: number, memberLo: number, weight: number, floor: number): number {
  const n = mixTop52((keyHi ^ memberHi) >>> 0, (keyLo ^ memberLo) >>> 0)
  // 1 - u is exact: both are multiples of 2^-53 in [0, 1].
  const oneMinusU = 1 - (n + 0.5) * 2 ** -52
  if ((weight / oneMinusU) * PRUNE_MARGIN < floor) return -1
  return weight / -lnUnit(n)
}

// fdlibm's e_log.c constants: ln2 split for extra precision and the minimax
// polynomial for log((1+s)/(1-s)).
const LN2_HI = 6.93147180369123816490e-1
const LN2_LO = 1.90821492927058770002e-10
const LG1 = 6.666666666666735130e-1
const LG2 = 3.999999999940941908e-1
const LG3 = 2.857142874366239149e-1
const LG4 = 2.222219843214978396e-1
const LG5 = 1.818357216161805012e-1
const LG6 = 1.531383769920937332e-1
const LG7 = 1.479819860511658591e-1
const SQRT2 = Math.SQRT2

// 2^-e for e in [-1, 52], exact powers of two.
const INVERSE_POWERS_OF_TWO = Array.from({ length: 54 }, (_, i) => 2 ** -(i - 1))

/**
 * ln(u) for u = (n + 0.5) * 2^-52, where n is an integer in [0, 2^52).
 *
 * fdlibm's algorithm, with the exponent taken from the integer instead of the
 * float's bits: u = 2^k * m with m ∈ [√2/2, √2), ln u = k ln2 + ln m, and ln m
 * from s = f / (2 + f), f = m - 1. Error below one ulp; every operation is an
 * IEEE basic operation, so the result is the same bits everywhere.
 */
export function lnUnit(n: number): number {
  const nLo = n >>> 0
  const nHi = (n - nLo) / 0x100000000
  // e = floor(log2(n + 0.5)): -1 when n = 0, else the index of n's top bit.
  const e = nHi !== 0 ? 63 - Math.clz32(nHi) : nLo !== 0 ? 31 - Math.clz32(nLo) : -1
  const x = n + 0.5
  let m = x * (INVERSE_POWERS_OF_TWO[e + 1] as number)
  let k = e - 52
  if (m > SQRT2) {
    m *= 0.5
    k += 1
  }
  const f = m - 1
  const s = f / (2 + f)
  const z = s * s
  const w = z * z
  const t1 = w * (LG2 + w * (LG4 + w * LG6))
  const t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
  const r = t2 + t1
  const hfsq = 0.5 * f * f
  return k * LN2_HI - (hfsq - (s * (hfsq + r) + k * LN2_LO) - f)
}
