/**
 * Content addresses of chunks: CIDv1, codec raw (0x55) by default, multihash
 * sha2-256 (node:crypto, which uses the CPU's SHA extensions) or blake3
 * (hash-wasm). The same bytes always get the same CID, which is what makes
 * chunks deduplicate and lets every read verify what it got.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { createBLAKE3, type IHasher } from 'hash-wasm'
import { CairnError, InvalidArgumentError } from './errors.js'

/** Hash functions a StoragePolicy may choose for chunk names. */
export type ChunkHash = 'sha2-256' | 'blake3'

/** Multicodec of raw bytes: the codec of data chunks. */
export const RAW_CODEC = 0x55
/** Multihash codes (multicodec table). */
export const SHA2_256_CODE = 0x12
export const BLAKE3_CODE = 0x1e
const DIGEST_BYTES = 32

/** A chunk's bytes do not hash to its CID: corruption, never to be returned to a reader. */
export class ChunkIntegrityError extends CairnError {
  override readonly name = 'ChunkIntegrityError'
  readonly kind = 'data-loss'
}

/** blake3 was asked for before loadChunkHashers() resolved. */
export class HasherNotLoadedError extends CairnError {
  override readonly name = 'HasherNotLoadedError'
  readonly kind = 'failed-precondition'
}

let blake3: IHasher | undefined
let blake3Loading: Promise<void> | undefined

/**
 * Loads the hashers that need asynchronous set-up (blake3 is WebAssembly, and
 * hash-wasm only instantiates asynchronously). Idempotent; call it once at
 * start-up before hashing with blake3. sha2-256 needs no loading.
 */
export async function loadChunkHashers(): Promise<void> {
  blake3Loading ??= createBLAKE3(DIGEST_BYTES * 8).then(
    (hasher) => {
      blake3 = hasher
    },
    (err: unknown) => {
      blake3Loading = undefined
      throw err
    },
  )
  await blake3Loading
}

/** The raw digest of `bytes` under the multihash `code`. */
function digestBytes(bytes: Uint8Array, code: number): Uint8Array {
  if (code === SHA2_256_CODE) {
    const d = createHash('sha256').update(bytes).digest()
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
  }
  if (code === BLAKE3_CODE) {
    if (blake3 === undefined) throw new HasherNotLoadedError('blake3 is not loaded; await loadChunkHashers() first')
    // init() resets the hasher, and calls never interleave (synchronous), so one instance serves all.
    return blake3.init().update(bytes).digest('binary')
  }
  throw new InvalidArgumentError(`unsupported multihash code 0x${code.toString(16)}`)
}

function hashCode(hash: ChunkHash): number {
  if (hash === 'sha2-256') return SHA2_256_CODE
  if (hash === 'blake3') return BLAKE3_CODE
  throw new InvalidArgumentError(`unsupported chunk hash ${JSON.stringify(hash)}`)
}

/**
 * The CIDv1 of a chunk.
 * @param hash @default 'sha2-256'
 * @param codec multicodec of the content (manifest pages use dag-cbor) @default RAW_CODEC
 */
export function chunkCid(bytes: Uint8Array, hash: ChunkHash = 'sha2-256', codec: number = RAW_CODEC): CID {
  const code = hashCode(hash)
  return CID.createV1(codec, Digest.create(code, digestBytes(bytes, code)))
}

/** Throws ChunkIntegrityError unless `bytes` hash to `cid` (with the CID's own hash function). */
export function verifyChunk(cid: CID, bytes: Uint8Array): void {
  const actual = digestBytes(bytes, cid.multihash.code)
  if (!equalBytes(actual, cid.multihash.digest)) {
    throw new ChunkIntegrityError(`chunk of ${bytes.length} bytes does not match ${cid.toString()}`)
  }
}

/** The binary form stored in shard headers and sqlite. */
export function cidToBytes(cid: CID): Uint8Array {
  return cid.bytes
}

/**
 * A key for in-memory maps and sets: the CID's bytes as latin1 (one character a byte),
 * a flat string. Not for display or persistence (use `cid.toString()`). Unlike
 * `cid.toString()` it leaves nothing behind on the CID: multiformats caches each string
 * form on the CID object (a Map per CID holding base32 text built by concatenation,
 * ~1.5 KiB of heap per CID), and every CID a cached manifest page holds would carry one.
 */
export function cidKey(cid: CID): string {
  const bytes = cid.bytes
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

/** Parses the binary form; anything that is not a whole, valid CID → InvalidArgumentError. */
export function cidFromBytes(bytes: Uint8Array): CID {
  let cid: CID
  try {
    cid = CID.decode(bytes)
  } catch (err) {
    throw new InvalidArgumentError('bytes are not a valid CID', { cause: err })
  }
  if (cid.version !== 1) throw new InvalidArgumentError(`expected a CIDv1, got v${cid.version}`)
  return cid
}

/** Parses the string form (base32 `b...`); invalid → InvalidArgumentError. */
export function cidFromString(text: string): CID {
  try {
    return CID.parse(text)
  } catch (err) {
    throw new InvalidArgumentError(`not a valid CID: ${JSON.stringify(text)}`, { cause: err })
  }
}

/** The hash a CID was made with, for policies and verification. */
export function cidHash(cid: CID): ChunkHash {
  if (cid.multihash.code === SHA2_256_CODE) return 'sha2-256'
  if (cid.multihash.code === BLAKE3_CODE) return 'blake3'
  throw new InvalidArgumentError(`unsupported multihash code 0x${cid.multihash.code.toString(16)}`)
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
