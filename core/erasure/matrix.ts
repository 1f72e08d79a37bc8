/**
 * Matrices over GF(2^8), row-major in one Uint8Array, and the code's encoding
 * matrix.
 */
import { gfInv, gfMul } from './gf256.js'
import { assert } from '../errors.js'

/** A rows × cols matrix over GF(2^8), row-major. */
export interface GfMatrix {
  readonly rows: number
  readonly cols: number
  readonly data: Uint8Array
}

export function matrix(rows: number, cols: number, data = new Uint8Array(rows * cols)): GfMatrix {
  assert(data.length === rows * cols, `matrix data length ${data.length} != ${rows}x${cols}`)
  return { rows, cols, data }
}

/**
 * The (k+m) × k systematic encoding matrix: identity on top, a Cauchy matrix
 * below. Every square submatrix of a Cauchy matrix is invertible, so every k×k
 * submatrix of the stacked matrix is too: any k shards rebuild the chunk.
 * (A Vandermonde matrix made systematic needs a proof per (k, m); Cauchy needs none.)
 * Parity row i, column j holds 1 / (x_i + y_j) with x_i = k + i and y_j = j, which
 * are distinct field elements while k + m ≤ 256.
 */
export function encodingMatrix(dataShards: number, parityShards: number): GfMatrix {
  const k = dataShards
  const out = matrix(k + parityShards, k)
  for (let j = 0; j < k; j++) out.data[j * k + j] = 1
  for (let i = 0; i < parityShards; i++) {
    for (let j = 0; j < k; j++) out.data[(k + i) * k + j] = gfInv((k + i) ^ j)
  }
  return out
}

/** The matrix made of the given rows of `m`, in order. */
export function selectRows(m: GfMatrix, rowIndexes: readonly number[]): GfMatrix {
  const out = matrix(rowIndexes.length, m.cols)
  rowIndexes.forEach((r, i) => out.data.set(m.data.subarray(r * m.cols, (r + 1) * m.cols), i * m.cols))
  return out
}

/** a × b. */
export function multiply(a: GfMatrix, b: GfMatrix): GfMatrix {
  assert(a.cols === b.rows, `matrix shapes ${a.rows}x${a.cols} * ${b.rows}x${b.cols}`)
  const out = matrix(a.rows, b.cols)
  for (let r = 0; r < a.rows; r++) {
    for (let c = 0; c < b.cols; c++) {
      let acc = 0
      for (let i = 0; i < a.cols; i++) acc ^= gfMul(a.data[r * a.cols + i] as number, b.data[i * b.cols + c] as number)
      out.data[r * b.cols + c] = acc
    }
  }
  return out
}

/**
 * The inverse of a square matrix by Gauss–Jordan elimination. A singular input
 * means the encoding matrix lost its MDS property: a bug, so it asserts.
 */
export function invert(m: GfMatrix): GfMatrix {
  assert(m.rows === m.cols, `cannot invert a ${m.rows}x${m.cols} matrix`)
  const n = m.rows
  const a = Uint8Array.from(m.data)
  const inv = matrix(n, n)
  for (let i = 0; i < n; i++) inv.data[i * n + i] = 1
  for (let col = 0; col < n; col++) {
    let pivot = col
    while (pivot < n && a[pivot * n + col] === 0) pivot++
    assert(pivot < n, 'singular matrix: the encoding matrix is not MDS')
    swapRows(a, n, col, pivot)
    swapRows(inv.data, n, col, pivot)
    const scale = gfInv(a[col * n + col] as number)
    scaleRow(a, n, col, scale)
    scaleRow(inv.data, n, col, scale)
    for (let r = 0; r < n; r++) {
      const factor = a[r * n + col] as number
      if (r === col || factor === 0) continue
      addScaledRow(a, n, r, col, factor)
      addScaledRow(inv.data, n, r, col, factor)
    }
  }
  return inv
}

function swapRows(d: Uint8Array, n: number, r1: number, r2: number): void {
  if (r1 === r2) return
  for (let c = 0; c < n; c++) {
    const t = d[r1 * n + c] as number
    d[r1 * n + c] = d[r2 * n + c] as number
    d[r2 * n + c] = t
  }
}

function scaleRow(d: Uint8Array, n: number, r: number, factor: number): void {
  for (let c = 0; c < n; c++) d[r * n + c] = gfMul(d[r * n + c] as number, factor)
}

/** row[dst] += factor · row[src]. */
function addScaledRow(d: Uint8Array, n: number, dst: number, src: number, factor: number): void {
  for (let c = 0; c < n; c++) d[dst * n + c] = (d[dst * n + c] as number) ^ gfMul(d[src * n + c] as number, factor)
}
