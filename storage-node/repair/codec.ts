/**
 * Rebuild arithmetic for repair: decode chunks from any k shards each (verifying
 * every one against its CID), then encode them again to get the lost shards.
 * Batched: one job carries many chunks, because a thread hop per 64 KiB chunk
 * cost more main-thread time (postMessage, structured clone) than the arithmetic.
 * On the core worker pool when the daemon passes one, else on this thread.
 */
import { CID } from 'multiformats/cid'
import { cidHash } from '../../core/cid.js'
import { assert } from '../../core/errors.js'
import { createCodecJobRunner, type CodecJobRunner, type ShardedChunk } from '../../core/workers/codec-jobs.js'
import type { CodecPool } from '../../core/workers/pool.js'

export interface RebuildCodec {
  /**
   * The chunks rebuilt from the shards given, each verified against its `cid`, in order.
   * One bad chunk fails the whole call (callers retry chunks alone to find it).
   * @throws ChunkIntegrityError, InsufficientShardsError
   */
  decode(k: number, m: number, chunks: ShardedChunk[]): Promise<Uint8Array[]>
  /**
   * The k+m shard payloads of each verified chunk, in order. Every chunk must share
   * one hash function and multicodec (the first CID's); each re-encode must name its
   * chunk exactly as `cids[i]` (asserted: anything else is a codec bug).
   */
  encode(k: number, m: number, cids: readonly CID[], chunks: Uint8Array[]): Promise<Uint8Array[][]>
}

/** A codec over the worker pool, or over a runner on this thread when `pool` is undefined. */
export async function createRebuildCodec(pool: CodecPool | undefined): Promise<RebuildCodec> {
  if (pool !== undefined) {
    return {
      async decode(k, m, chunks) {
        return checkDecoded(await pool.decode({ dataShards: k, parityShards: m, chunks }), chunks.length)
      },
      async encode(k, m, cids, chunks) {
        const first = firstCid(cids, chunks)
        // The decoded chunks are fresh buffers nobody else holds: move them, do not copy.
        const encoded = await pool.encode({ dataShards: k, parityShards: m, hash: cidHash(first), codec: first.code, chunks }, { transfer: true })
        return checkEncoded(encoded, cids, k + m)
      },
    }
  }
  const runner: CodecJobRunner = await createCodecJobRunner('wasm-simd').catch(() => createCodecJobRunner('ts'))
  return {
    async decode(k, m, chunks) {
      return checkDecoded(runner.run({ kind: 'decode', dataShards: k, parityShards: m, chunks }), chunks.length)
    },
    async encode(k, m, cids, chunks) {
      const first = firstCid(cids, chunks)
      return checkEncoded(runner.run({ kind: 'encode', dataShards: k, parityShards: m, hash: cidHash(first), codec: first.code, chunks }), cids, k + m)
    },
  }
}

function firstCid(cids: readonly CID[], chunks: readonly Uint8Array[]): CID {
  assert(cids.length === chunks.length && cids.length > 0, 'encode needs one CID per chunk')
  return cids[0] as CID
}

function checkDecoded(decoded: Uint8Array[], count: number): Uint8Array[] {
  assert(decoded.length === count, 'decode returned the wrong chunk count')
  return decoded
}

/** Re-encoding a verified chunk must name it the same: anything else is a codec bug, never written out. */
function checkEncoded(encoded: { cid: Uint8Array; shards: Uint8Array[] }[], cids: readonly CID[], total: number): Uint8Array[][] {
  assert(encoded.length === cids.length, 'encode returned the wrong chunk count')
  return encoded.map((e, i) => {
    assert(Buffer.compare(e.cid, (cids[i] as CID).bytes) === 0, 're-encoded chunk has another CID')
    assert(e.shards.length === total, 're-encode returned the wrong shard count')
    return e.shards
  })
}
