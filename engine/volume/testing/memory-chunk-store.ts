/**
 * An in-memory ChunkStore for engine tests: content-addressed with the real CID
 * code, no erasure coding. It enforces the contract's promises (no all-zero data
 * chunks, verified reads) and can inject failures. Test infrastructure only.
 */
import type { CID } from 'multiformats/cid'
import { CairnError } from '../../../core/errors.js'
import { chunkCid, type ChunkHash } from '../../../core/cid.js'
import type { ChunkCodec, ChunkStore } from '../../contracts.js'
import { isAllZero } from '../dirty-chunk.js'

const DAG_CBOR_CODE = 0x71
const RAW_CODE = 0x55

/** No chunk with that CID is stored. */
export class FakeChunkUnavailableError extends CairnError {
  override readonly name = 'ChunkUnavailableError'
  readonly kind = 'unavailable'
}

/** An injected put failure. */
export class FakeChunkWriteError extends CairnError {
  override readonly name = 'ChunkWriteError'
  readonly kind = 'unavailable'
}

export class MemoryChunkStore implements ChunkStore {
  readonly chunks = new Map<string, Uint8Array>()
  /** Data (raw) chunks put, including rewrites of existing ones. */
  rawPuts = 0
  /** Failures to inject into the next calls of putChunks. */
  failPuts = 0
  /** When set, every put waits for it (to hold a flush in the middle). */
  gate: Promise<void> | undefined

  constructor(private readonly hash: ChunkHash = 'sha2-256') {}

  async putChunks(chunks: readonly Uint8Array[], codec: ChunkCodec): Promise<CID[]> {
    if (this.gate !== undefined) await this.gate
    if (this.failPuts > 0) {
      this.failPuts--
      throw new FakeChunkWriteError('injected put failure')
    }
    return chunks.map((bytes) => {
      if (codec === 'raw' && isAllZero(bytes)) throw new Error('contract broken: an all-zero chunk was put')
      const cid = chunkCid(bytes, this.hash, codec === 'raw' ? RAW_CODE : DAG_CBOR_CODE)
      this.chunks.set(cid.toString(), Uint8Array.from(bytes))
      if (codec === 'raw') this.rawPuts++
      return cid
    })
  }

  async getChunks(cids: readonly CID[]): Promise<Uint8Array[]> {
    return cids.map((cid) => {
      const bytes = this.chunks.get(cid.toString())
      if (bytes === undefined) throw new FakeChunkUnavailableError(`chunk ${cid.toString()} not found`)
      return Uint8Array.from(bytes)
    })
  }
}
