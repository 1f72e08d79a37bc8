/**
 * The work the codec pool does, as plain synchronous functions: hash and encode
 * a batch of chunks, or reconstruct and verify one. Worker threads run them; so
 * does the calling thread for small batches and tests, with identical results.
 */
import { chunkCid, cidFromBytes, cidToBytes, loadChunkHashers, RAW_CODEC, verifyChunk, type ChunkHash } from '../cid.js'
import { createCodec, type ErasureCodec } from '../erasure/codec.js'
import type { GfKernel, KernelName } from '../erasure/kernel.js'
import { loadKernel } from '../erasure/wasm-kernel.js'
import { InvalidArgumentError, assert } from '../errors.js'

/** Hash each chunk and cut it into k+m shards. */
export interface EncodeJob {
  kind: 'encode'
  dataShards: number
  parityShards: number
  /** @default 'sha2-256' */
  hash?: ChunkHash
  /** Multicodec of the chunks' CIDs: raw for volume data, dag-cbor (0x71) for manifest pages. @default RAW_CODEC (0x55) */
  codec?: number
  chunks: Uint8Array[]
}

export interface EncodedChunk {
  /** The chunk's CID in binary form. */
  cid: Uint8Array
  chunkLengthBytes: number
  /** k+m shards, views over one ArrayBuffer (transferred whole between threads). */
  shards: Uint8Array[]
}

export interface ShardedChunk {
  cid: Uint8Array
  chunkLengthBytes: number
  /** k+m slots; lost or unread shards are undefined. */
  shards: (Uint8Array | undefined)[]
}

/** Rebuild each chunk from any k shards and verify it against its CID. */
export interface DecodeJob {
  kind: 'decode'
  dataShards: number
  parityShards: number
  chunks: ShardedChunk[]
}

export type CodecJob = EncodeJob | DecodeJob
export type CodecJobResult = EncodedChunk[] | Uint8Array[]

/** Bound on distinct (k, m) codecs kept per runner; policies use a handful. */
const CODECS_MAX = 16

/** Runs codec jobs on the current thread. One runner per thread: its kernel owns WASM memory. */
export class CodecJobRunner {
  readonly #kernel: GfKernel
  readonly #codecs = new Map<string, ErasureCodec>()

  constructor(kernel: GfKernel) {
    this.#kernel = kernel
  }

  run(job: EncodeJob): EncodedChunk[]
  run(job: DecodeJob): Uint8Array[]
  run(job: CodecJob): CodecJobResult
  run(job: CodecJob): CodecJobResult {
    if (job === null || typeof job !== 'object') throw new InvalidArgumentError('codec job must be an object')
    if (!Array.isArray(job.chunks)) throw new InvalidArgumentError('codec job needs a chunks array')
    const codec = this.#codec(job.dataShards, job.parityShards)
    if (job.kind === 'encode') {
      const cidCodec = job.codec ?? RAW_CODEC
      if (!Number.isSafeInteger(cidCodec) || cidCodec < 0) throw new InvalidArgumentError(`bad multicodec ${String(cidCodec)}`)
      return encodeBatch(codec, job.chunks, job.hash ?? 'sha2-256', cidCodec)
    }
    if (job.kind === 'decode') return job.chunks.map((chunk) => decodeOne(codec, chunk))
    throw new InvalidArgumentError(`unknown codec job kind ${JSON.stringify((job as { kind: unknown }).kind)}`)
  }

  #codec(dataShards: number, parityShards: number): ErasureCodec {
    const key = `${dataShards}+${parityShards}`
    let codec = this.#codecs.get(key)
    if (codec === undefined) {
      codec = createCodec({ dataShards, parityShards }, { kernel: this.#kernel })
      if (this.#codecs.size >= CODECS_MAX) this.#codecs.delete(this.#codecs.keys().next().value as string)
      this.#codecs.set(key, codec)
    }
    return codec
  }
}

/** A runner with the named kernel and every chunk hasher loaded. */
export async function createCodecJobRunner(kernel: KernelName): Promise<CodecJobRunner> {
  const [k] = await Promise.all([loadKernel(kernel), loadChunkHashers()])
  return new CodecJobRunner(k)
}

/** Hashes each chunk, then encodes the whole batch in one pass of the kernel. */
function encodeBatch(codec: ErasureCodec, chunks: readonly Uint8Array[], hash: ChunkHash, cidCodec: number): EncodedChunk[] {
  for (const chunk of chunks) if (!(chunk instanceof Uint8Array)) throw new InvalidArgumentError('each chunk must be a Uint8Array')
  const cids = chunks.map((chunk) => cidToBytes(chunkCid(chunk, hash, cidCodec)))
  const sharded = codec.encodeBatch(chunks)
  assert(sharded.length === chunks.length, 'encode returned the wrong chunk count')
  return sharded.map((shards, i) => {
    assert(shards.length === codec.totalShards, 'encode returned the wrong shard count')
    return { cid: cids[i] as Uint8Array, chunkLengthBytes: (chunks[i] as Uint8Array).length, shards }
  })
}

function decodeOne(codec: ErasureCodec, chunk: ShardedChunk): Uint8Array {
  if (chunk === null || typeof chunk !== 'object' || !(chunk.cid instanceof Uint8Array)) {
    throw new InvalidArgumentError('each sharded chunk needs a binary cid')
  }
  const cid = cidFromBytes(chunk.cid)
  const bytes = codec.reconstruct(chunk.shards, chunk.chunkLengthBytes)
  // A rebuilt chunk is checked against its name before a byte of it is returned.
  verifyChunk(cid, bytes)
  return bytes
}

/**
 * Buffers that can move to another thread without a copy: the views given cover
 * the whole ArrayBuffer (like the k+m shards of one encode). A buffer only partly
 * covered may hold other data (Node's Buffer pool, a caller's larger read), so it
 * is copied rather than detached under someone else's feet.
 */
export function transferables(views: Iterable<Uint8Array | undefined>): ArrayBuffer[] {
  const covered = new Map<ArrayBuffer, number>()
  for (const v of views) {
    if (v === undefined || !(v.buffer instanceof ArrayBuffer)) continue
    covered.set(v.buffer, (covered.get(v.buffer) ?? 0) + v.byteLength)
  }
  return [...covered].filter(([buffer, bytes]) => bytes >= buffer.byteLength && buffer.byteLength > 0).map(([buffer]) => buffer)
}

/** Bytes a job carries in: decides whether it is worth a thread hop. */
export function jobInputBytes(job: CodecJob): number {
  let total = 0
  if (job.kind === 'encode') for (const c of job.chunks) total += c.byteLength
  else for (const c of job.chunks) for (const s of c.shards) total += s?.byteLength ?? 0
  return total
}
