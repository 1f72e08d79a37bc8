/**
 * The Bloom filter garbage collection sends to storage nodes: the set of marked
 * chunk CIDs (binary form), built by the mark and queried by each node's sweep.
 *
 * A filter never forgets a key (no false negatives, so a marked chunk is never
 * swept); a false positive only keeps a garbage shard until a later run. Each run
 * draws a fresh random salt, so the garbage one run keeps by chance is a
 * different, independent sample the next time.
 *
 * Hashing: two 32-bit MurmurHash3 values of the key, seeded from the salt,
 * combined as h1 + i·h2 (Kirsch–Mitzenmacher double hashing), reduced modulo the
 * bit count. Format version 1; the node refuses any other.
 */
import { randomBytes } from 'node:crypto'
import { InvalidArgumentError } from './errors.js'

export const BLOOM_FORMAT_VERSION = 1
/** Bytes of salt per run. */
export const BLOOM_SALT_BYTES = 16
/** Most hash functions a filter may use (keeps a query bounded whatever a sender claims). */
export const BLOOM_HASHES_MAX = 32

/** The wire and storage form of a filter. */
export interface BloomFilterParts {
  version: number
  salt: Uint8Array
  hashCount: number
  bits: Uint8Array
}

/** Bits and hash count for `expectedKeys` keys at false-positive rate `falsePositiveRate`. */
export function bloomSize(expectedKeys: number, falsePositiveRate: number): { bitCount: number; hashCount: number } {
  if (!Number.isSafeInteger(expectedKeys) || expectedKeys < 0) throw new InvalidArgumentError(`expectedKeys must be a non-negative integer, got ${expectedKeys}`)
  if (!(falsePositiveRate > 0 && falsePositiveRate < 1)) throw new InvalidArgumentError(`falsePositiveRate must be in (0, 1), got ${falsePositiveRate}`)
  const n = Math.max(1, expectedKeys)
  // m = −n·ln p / (ln 2)², k = (m/n)·ln 2; rounded up to whole bytes, at least 64 bits.
  const bitCount = Math.max(64, Math.ceil((-n * Math.log(falsePositiveRate)) / (Math.LN2 * Math.LN2) / 8) * 8)
  const hashCount = Math.min(BLOOM_HASHES_MAX, Math.max(1, Math.round((bitCount / n) * Math.LN2)))
  return { bitCount, hashCount }
}

export class BloomFilter {
  readonly salt: Uint8Array
  readonly hashCount: number
  readonly bits: Uint8Array
  readonly #bitCount: number
  readonly #seed1: number
  readonly #seed2: number
  /** Keys added (with repeats). */
  addedCount = 0

  private constructor(parts: BloomFilterParts) {
    this.salt = parts.salt
    this.hashCount = parts.hashCount
    this.bits = parts.bits
    this.#bitCount = parts.bits.byteLength * 8
    const view = new DataView(parts.salt.buffer, parts.salt.byteOffset, parts.salt.byteLength)
    this.#seed1 = view.getUint32(0, true) ^ view.getUint32(8, true)
    this.#seed2 = view.getUint32(4, true) ^ view.getUint32(12, true)
  }

  /** An empty filter sized for `expectedKeys` at `falsePositiveRate`, with a fresh random salt unless one is given (tests). */
  static create(expectedKeys: number, falsePositiveRate: number, salt: Uint8Array = randomBytes(BLOOM_SALT_BYTES)): BloomFilter {
    const { bitCount, hashCount } = bloomSize(expectedKeys, falsePositiveRate)
    if (bitCount > 2 ** 32) throw new InvalidArgumentError(`a filter for ${expectedKeys} keys needs ${bitCount} bits; at most 2^32 are addressable`)
    return new BloomFilter({ version: BLOOM_FORMAT_VERSION, salt: Uint8Array.from(salt), hashCount, bits: new Uint8Array(bitCount / 8) })
  }

  /** A filter from its parts (as received); InvalidArgumentError when they are not a version-1 filter. */
  static from(parts: BloomFilterParts): BloomFilter {
    if (parts.version !== BLOOM_FORMAT_VERSION) throw new InvalidArgumentError(`bloom filter version ${parts.version} is not ${BLOOM_FORMAT_VERSION}`)
    if (parts.salt.byteLength !== BLOOM_SALT_BYTES) throw new InvalidArgumentError(`bloom filter salt must be ${BLOOM_SALT_BYTES} bytes, got ${parts.salt.byteLength}`)
    if (!Number.isInteger(parts.hashCount) || parts.hashCount < 1 || parts.hashCount > BLOOM_HASHES_MAX) {
      throw new InvalidArgumentError(`bloom filter hash count must be 1 to ${BLOOM_HASHES_MAX}, got ${parts.hashCount}`)
    }
    if (parts.bits.byteLength < 8 || parts.bits.byteLength > 2 ** 29) throw new InvalidArgumentError('bloom filter must have 64 to 2^32 bits')
    return new BloomFilter(parts)
  }

  get bitCount(): number {
    return this.#bitCount
  }

  parts(): BloomFilterParts {
    return { version: BLOOM_FORMAT_VERSION, salt: this.salt, hashCount: this.hashCount, bits: this.bits }
  }

  add(key: Uint8Array): void {
    const h1 = murmur3(key, this.#seed1)
    const h2 = murmur3(key, this.#seed2) | 1
    for (let i = 0; i < this.hashCount; i++) {
      const bit = ((h1 + Math.imul(i, h2)) >>> 0) % this.#bitCount
      this.bits[bit >>> 3]! |= 1 << (bit & 7)
    }
    this.addedCount++
  }

  /** False: certainly never added. True: added, or a false positive. */
  has(key: Uint8Array): boolean {
    const h1 = murmur3(key, this.#seed1)
    const h2 = murmur3(key, this.#seed2) | 1
    for (let i = 0; i < this.hashCount; i++) {
      const bit = ((h1 + Math.imul(i, h2)) >>> 0) % this.#bitCount
      if ((this.bits[bit >>> 3]! & (1 << (bit & 7))) === 0) return false
    }
    return true
  }

  /** The false-positive rate expected from the fraction of bits set: (set/m)^k. */
  estimatedFalsePositiveRate(): number {
    let set = 0
    for (const byte of this.bits) set += POPCOUNT[byte]!
    return (set / this.#bitCount) ** this.hashCount
  }
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0
  for (let x = b; x !== 0; x >>>= 1) n += x & 1
  return n
})

/** MurmurHash3 x86 32-bit of `key` with `seed`. */
export function murmur3(key: Uint8Array, seed: number): number {
  let h = seed >>> 0
  const blocks = key.byteLength & ~3
  for (let i = 0; i < blocks; i += 4) {
    let k = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24)
    k = Math.imul(k, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, 0x1b873593)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const tail = key.byteLength & 3
  if (tail > 0) {
    let k = key[blocks]!
    if (tail > 1) k ^= key[blocks + 1]! << 8
    if (tail > 2) k ^= key[blocks + 2]! << 16
    k = Math.imul(k, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, 0x1b873593)
    h ^= k
  }
  h ^= key.byteLength
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
