/**
 * An in-memory ChunkStore for tests of code built on the interface (the
 * manifest, the volume engine): real CIDs and verification, no erasure coding,
 * no network. It counts calls so tests can check how much a caller wrote.
 */
import type { CID } from 'multiformats/cid'
import { code as DAG_CBOR_CODE } from '@ipld/dag-cbor'
import { RAW_CODEC, chunkCid, verifyChunk, type ChunkHash } from '../../core/cid.js'
import { InvalidArgumentError } from '../../core/errors.js'
import type { ChunkCodec, ChunkStore } from '../contracts.js'
import { ChunkUnavailableError } from './errors.js'

export class MemoryChunkStore implements ChunkStore {
  readonly #chunks = new Map<string, Uint8Array>()
  /** putChunks calls and chunks passed to them. */
  putCalls = 0
  chunksPut = 0
  /** getChunks calls and CIDs asked for. */
  getCalls = 0
  chunksGot = 0
  /** CIDs of every chunk passed to putChunks, in order. */
  readonly putLog: CID[] = []

  constructor(private readonly hash: ChunkHash = 'sha2-256') {}

  async putChunks(chunks: readonly Uint8Array[], codec: ChunkCodec): Promise<CID[]> {
    if (codec !== 'raw' && codec !== 'dag-cbor') throw new InvalidArgumentError(`unknown codec ${String(codec)}`)
    this.putCalls++
    this.chunksPut += chunks.length
    return chunks.map((c) => {
      const cid = chunkCid(c, this.hash, codec === 'raw' ? RAW_CODEC : DAG_CBOR_CODE)
      this.#chunks.set(cid.toString(), c.slice())
      this.putLog.push(cid)
      return cid
    })
  }

  async getChunks(cids: readonly CID[]): Promise<Uint8Array[]> {
    this.getCalls++
    this.chunksGot += cids.length
    return cids.map((cid) => {
      const bytes = this.#chunks.get(cid.toString())
      if (bytes === undefined) throw new ChunkUnavailableError(cid.toString(), 'data-loss', `no chunk ${cid.toString()}`)
      // Shared, as the real store's cache hands them out: a caller that wrote to a chunk fails its next get here.
      verifyChunk(cid, bytes)
      return bytes
    })
  }

  /** Whether a chunk is stored. */
  has(cid: CID): boolean {
    return this.#chunks.has(cid.toString())
  }

  resetCounters(): void {
    this.putCalls = 0
    this.chunksPut = 0
    this.getCalls = 0
    this.chunksGot = 0
    this.putLog.length = 0
  }
}
