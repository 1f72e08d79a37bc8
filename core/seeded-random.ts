/**
 * Deterministic pseudo-random streams (xorshift32) for tests and benchmarks: the
 * same seed gives the same numbers and bytes on every run and platform, so a
 * failing randomized test can print its seed and be replayed. Never for anything
 * that must be unpredictable.
 */

/** The next 32-bit unsigned value on each call; a zero seed is replaced (xorshift stays at 0 forever). */
export function xorshift32(seed: number, zeroSeed = 1): () => number {
  let x = seed >>> 0 || zeroSeed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

/** A uniform number in [0, 1) on each call. */
export function seededRandom(seed: number): () => number {
  const next = xorshift32(seed)
  return () => next() / 2 ** 32
}

/** Fills `bytes` with one byte per step of the stream (zero seed: the golden-ratio constant) and returns it. */
export function fillSeeded(bytes: Uint8Array, seed: number): Uint8Array {
  const next = xorshift32(seed, 0x9e3779b9)
  for (let i = 0; i < bytes.length; i++) bytes[i] = next() & 0xff
  return bytes
}

/** A buffer of `sizeBytes` filled with whole 32-bit little-endian words of the stream (a trailing partial word stays zero). */
export function seededWords(sizeBytes: number, seed: number): Buffer {
  const out = Buffer.alloc(sizeBytes)
  const next = xorshift32(seed)
  for (let i = 0; i + 4 <= sizeBytes; i += 4) out.writeUInt32LE(next(), i)
  return out
}
