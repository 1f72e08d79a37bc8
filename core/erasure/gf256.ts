/**
 * Arithmetic in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d),
 * generator 2: the field used by most Reed–Solomon storage codes (ISA-L, Jerasure,
 * klauspost/reedsolomon). Shards on disk depend on it, so it never changes
 * without a shard format version bump.
 */

/** The field's reduction polynomial. */
export const GF_POLYNOMIAL = 0x11d

/** exp[i] = 2^i, doubled in length so that exp[log a + log b] needs no modulo. */
const EXP = new Uint8Array(512)
/** log[a] for a ≠ 0; log[0] is unused. */
const LOG = new Uint8Array(256)

;(function buildTables() {
  let x = 1
  for (let i = 0; i < 255; i++) {
    EXP[i] = x
    LOG[x] = i
    x <<= 1
    if (x & 0x100) x ^= GF_POLYNOMIAL
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255] as number
})()

/** Product of two field elements. */
export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0
  return EXP[(LOG[a] as number) + (LOG[b] as number)] as number
}

/** Multiplicative inverse; 0 has none and is a caller bug. */
export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('gf256: 0 has no inverse')
  return EXP[255 - (LOG[a] as number)] as number
}

/**
 * MUL_TABLE[c * 256 + x] = c·x: the whole multiplication table (64 KiB). Row c is
 * the lookup table that multiplies a byte stream by c, the heart of the
 * table-driven kernel.
 */
export const MUL_TABLE: Uint8Array = (() => {
  const table = new Uint8Array(256 * 256)
  for (let c = 0; c < 256; c++) {
    for (let x = 0; x < 256; x++) table[c * 256 + x] = gfMul(c, x)
  }
  return table
})()
