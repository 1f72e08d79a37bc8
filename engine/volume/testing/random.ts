/** A seeded PRNG (mulberry32) and a plain byte-array model of a volume, for randomized engine tests. */
import type { JournalOp } from '../../contracts.js'
import type { VolumeEngine } from '../engine.js'

export function prng(seed: number): { next(): number; int(lo: number, hi: number): number; bytes(n: number): Uint8Array } {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1))
  const bytes = (n: number): Uint8Array => {
    const out = new Uint8Array(n)
    // Runs of one value with some noise: realistic, and zero runs exercise the zero-chunk path.
    let v = int(0, 255)
    for (let i = 0; i < n; i++) {
      if (next() < 0.01) v = next() < 0.3 ? 0 : int(0, 255)
      out[i] = v
    }
    return out
  }
  return { next, int, bytes }
}

/** Applies an op to a model image. */
export function applyToModel(model: Uint8Array, op: JournalOp): void {
  if (op.kind === 'write') model.set(op.data, op.offsetBytes)
  else if (op.kind !== 'resize') model.fill(0, op.offsetBytes, op.offsetBytes + op.lengthBytes)
}

/** A random data op inside [0, sizeBytes), often unaligned and straddling chunks. */
export function randomOp(rng: ReturnType<typeof prng>, sizeBytes: number, chunkSizeBytes: number): JournalOp {
  const roll = rng.next()
  const maxLen = Math.min(sizeBytes, 3 * chunkSizeBytes)
  const aligned = rng.next() < 0.3
  let offsetBytes = aligned ? rng.int(0, sizeBytes / chunkSizeBytes - 1) * chunkSizeBytes : rng.int(0, sizeBytes - 1)
  let lengthBytes = aligned ? chunkSizeBytes * rng.int(1, 3) : rng.int(1, rng.next() < 0.5 ? 600 : maxLen)
  offsetBytes = Math.min(offsetBytes, sizeBytes - 1)
  lengthBytes = Math.min(lengthBytes, sizeBytes - offsetBytes)
  if (roll < 0.7) return { kind: 'write', offsetBytes, data: rng.bytes(lengthBytes) }
  if (roll < 0.85) return { kind: 'zero', offsetBytes, lengthBytes }
  return { kind: 'trim', offsetBytes, lengthBytes }
}

/** Issues `op` against the engine as the NBD server would. */
export function runOp(engine: VolumeEngine, op: JournalOp, fua = false): Promise<void> {
  if (op.kind === 'write') return engine.pwrite(op.offsetBytes, op.data, { fua })
  if (op.kind === 'zero') return engine.zero(op.offsetBytes, op.lengthBytes, { fua, fast: false, noHole: false })
  if (op.kind === 'trim') return engine.trim(op.offsetBytes, op.lengthBytes, { fua })
  return engine.resize(op.sizeBytes)
}
