// AssemblyScript kernel: GF(2^8) matrix × shards with 128-bit SIMD.
// Split-nibble multiply: c·x = c·(x & 0x0f) ^ c·(x & 0xf0), and each half has only
// 16 possible values, so a 16-byte table per half and one i8x16.swizzle (pshufb)
// multiply 16 bytes at once. The host writes 32 bytes of tables per coefficient
// ([c·0..c·15][c·0x00..c·0xf0]) and lays shards out at a fixed stride; lengths are
// multiples of 32 so there is no scalar tail.

/** First free byte after the module's static data; the host manages memory from here. */
export function heapBase(): usize {
  return __heap_base
}

/**
 * For each of `count` groups g (group g's shards start `groupStride` bytes after
 * group g-1's): out[r] = XOR_j table(r, j) applied to in[j], for r < rows, over
 * `len` bytes. A batch of chunks is one call, so the host pays one boundary
 * crossing per batch, not per chunk. Rows are produced four (then two, then one)
 * per pass so each input vector is loaded and split into nibbles once for all of
 * them: the loads and splits are what the field arithmetic shares.
 */
export function mulRows(tables: usize, rows: i32, cols: i32, inPtr: usize, outPtr: usize, stride: usize, len: usize, count: i32, groupStride: usize): void {
  for (let g = 0; g < count; g++) {
    const groupIn = inPtr + <usize>g * groupStride
    const groupOut = outPtr + <usize>g * groupStride
    let r = 0
    for (; r + 3 < rows; r += 4) {
      mulFourRows(tables + <usize>(r * cols * 32), cols, groupIn, groupOut + <usize>r * stride, stride, len)
    }
    for (; r + 1 < rows; r += 2) {
      mulTwoRows(tables + <usize>(r * cols * 32), cols, groupIn, groupOut + <usize>r * stride, stride, len)
    }
    if (r < rows) mulOneRow(tables + <usize>(r * cols * 32), cols, groupIn, groupOut + <usize>r * stride, stride, len)
  }
}

// @ts-ignore: decorator
@inline
function mulVec(lo: v128, hi: v128, xlo: v128, xhi: v128): v128 {
  return v128.xor(i8x16.swizzle(lo, xlo), i8x16.swizzle(hi, xhi))
}

function mulOneRow(tables: usize, cols: i32, inPtr: usize, out: usize, stride: usize, len: usize): void {
  const mask = i8x16.splat(0x0f)
  for (let off: usize = 0; off < len; off += 32) {
    let acc0 = i8x16.splat(0)
    let acc1 = i8x16.splat(0)
    for (let j = 0; j < cols; j++) {
      const t = tables + <usize>(j * 32)
      const lo = v128.load(t)
      const hi = v128.load(t, 16)
      const p = inPtr + <usize>j * stride + off
      const a = v128.load(p)
      const b = v128.load(p, 16)
      acc0 = v128.xor(acc0, mulVec(lo, hi, v128.and(a, mask), i8x16.shr_u(a, 4)))
      acc1 = v128.xor(acc1, mulVec(lo, hi, v128.and(b, mask), i8x16.shr_u(b, 4)))
    }
    v128.store(out + off, acc0)
    v128.store(out + off, acc1, 16)
  }
}

function mulTwoRows(tables: usize, cols: i32, inPtr: usize, out: usize, stride: usize, len: usize): void {
  const mask = i8x16.splat(0x0f)
  const rowTables = <usize>(cols * 32)
  for (let off: usize = 0; off < len; off += 32) {
    let x0 = i8x16.splat(0)
    let x1 = i8x16.splat(0)
    let y0 = i8x16.splat(0)
    let y1 = i8x16.splat(0)
    for (let j = 0; j < cols; j++) {
      const p = inPtr + <usize>j * stride + off
      const a = v128.load(p)
      const b = v128.load(p, 16)
      const alo = v128.and(a, mask)
      const ahi = i8x16.shr_u(a, 4)
      const blo = v128.and(b, mask)
      const bhi = i8x16.shr_u(b, 4)
      const t = tables + <usize>(j * 32)
      const lo0 = v128.load(t)
      const hi0 = v128.load(t, 16)
      x0 = v128.xor(x0, mulVec(lo0, hi0, alo, ahi))
      x1 = v128.xor(x1, mulVec(lo0, hi0, blo, bhi))
      const lo1 = v128.load(t + rowTables)
      const hi1 = v128.load(t + rowTables, 16)
      y0 = v128.xor(y0, mulVec(lo1, hi1, alo, ahi))
      y1 = v128.xor(y1, mulVec(lo1, hi1, blo, bhi))
    }
    v128.store(out + off, x0)
    v128.store(out + off, x1, 16)
    v128.store(out + stride + off, y0)
    v128.store(out + stride + off, y1, 16)
  }
}

/** Four rows, 32 bytes per step: eight accumulators and four nibble vectors. */
function mulFourRows(tables: usize, cols: i32, inPtr: usize, out: usize, stride: usize, len: usize): void {
  const mask = i8x16.splat(0x0f)
  const rowTables = <usize>(cols * 32)
  for (let off: usize = 0; off < len; off += 32) {
    let w0 = i8x16.splat(0)
    let w1 = i8x16.splat(0)
    let x0 = i8x16.splat(0)
    let x1 = i8x16.splat(0)
    let y0 = i8x16.splat(0)
    let y1 = i8x16.splat(0)
    let z0 = i8x16.splat(0)
    let z1 = i8x16.splat(0)
    for (let j = 0; j < cols; j++) {
      const p = inPtr + <usize>j * stride + off
      const a = v128.load(p)
      const b = v128.load(p, 16)
      const alo = v128.and(a, mask)
      const ahi = i8x16.shr_u(a, 4)
      const blo = v128.and(b, mask)
      const bhi = i8x16.shr_u(b, 4)
      let t = tables + <usize>(j * 32)
      let lo = v128.load(t)
      let hi = v128.load(t, 16)
      w0 = v128.xor(w0, mulVec(lo, hi, alo, ahi))
      w1 = v128.xor(w1, mulVec(lo, hi, blo, bhi))
      t += rowTables
      lo = v128.load(t)
      hi = v128.load(t, 16)
      x0 = v128.xor(x0, mulVec(lo, hi, alo, ahi))
      x1 = v128.xor(x1, mulVec(lo, hi, blo, bhi))
      t += rowTables
      lo = v128.load(t)
      hi = v128.load(t, 16)
      y0 = v128.xor(y0, mulVec(lo, hi, alo, ahi))
      y1 = v128.xor(y1, mulVec(lo, hi, blo, bhi))
      t += rowTables
      lo = v128.load(t)
      hi = v128.load(t, 16)
      z0 = v128.xor(z0, mulVec(lo, hi, alo, ahi))
      z1 = v128.xor(z1, mulVec(lo, hi, blo, bhi))
    }
    v128.store(out + off, w0)
    v128.store(out + off, w1, 16)
    v128.store(out + stride + off, x0)
    v128.store(out + stride + off, x1, 16)
    v128.store(out + 2 * stride + off, y0)
    v128.store(out + 2 * stride + off, y1, 16)
    v128.store(out + 3 * stride + off, z0)
    v128.store(out + 3 * stride + off, z1, 16)
  }
}
