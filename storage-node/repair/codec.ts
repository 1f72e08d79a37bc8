/**
 * Rebuild arithmetic for repair: decode a chunk from any k shards (verifying it
 * against its CID), then encode it again to get the lost shards. On the core
 * worker pool when the daemon passes one, else on this thread.
 */
import { CID } from 'multiformats/cid'
import { cidHash } from '../../core/cid.js'
import { assert } from '../../core/errors.js'
import { createCodecJobRunner, type CodecJobRunner, type ShardedChunk } from '../../core/workers/codec-jobs.js'
import type { CodecPool } from '../../core/workers/pool.js'

export interface RebuildCodec {
  /** The chunk rebuilt from the shards given, verified against `chunk.cid`. @throws ChunkIntegrityError, InsufficientShardsError */
  decode(k: number, m: number, chunk: ShardedChunk): Promise<Uint8Array>
  /** The k+m shard payloads of a verified chunk named `cid`. */
  encode(k: number, m: number, cid: CID, bytes: Uint8Array): Promise<Uint8Array[]>
}

/** A codec over the worker pool, or over a runner on this thread when `pool` is undefined. */
export async function createRebuildCodec(pool: CodecPool | undefined): Promise<RebuildCodec> {
  if (pool !== undefined) {
    return {
      async decode(k, m, chunk) {
        const [bytes] = await pool.decode({ dataShards: k, parityShards: m, chunks: [chunk] })
        assert(bytes !== undefined, 'decode returned no chunk')
        return bytes
      },
      async encode(k, m, cid, bytes) {
        const [encoded] = await pool.encode({ dataShards: k, parityShards: m, hash: cidHash(cid), codec: cid.code, chunks: [bytes] })
        return checkEncoded(encoded?.cid, encoded?.shards, cid, k + m)
      },
    }
  }
  const runner: CodecJobRunner = await createCodecJobRunner('wasm-simd').catch(() => createCodecJobRunner('ts'))
  return {
    async decode(k, m, chunk) {
      const [bytes] = runner.run({ kind: 'decode', dataShards: k, parityShards: m, chunks: [chunk] })
      assert(bytes !== undefined, 'decode returned no chunk')
      return bytes
    },
    async encode(k, m, cid, bytes) {
      const [encoded] = runner.run({ kind: 'encode', dataShards: k, parityShards: m, hash: cidHash(cid), codec: cid.code, chunks: [bytes] })
      return checkEncoded(encoded?.cid, encoded?.shards, cid, k + m)
    },
  }
}

/** Re-encoding a verified chunk must name it the same: anything else is a codec bug, never written out. */
function checkEncoded(cidBytes: Uint8Array | undefined, shards: Uint8Array[] | undefined, cid: CID, total: number): Uint8Array[] {
  assert(cidBytes !== undefined && shards !== undefined, 'encode returned no chunk')
  assert(Buffer.compare(cidBytes, cid.bytes) === 0, 're-encoded chunk has another CID')
  assert(shards.length === total, 're-encode returned the wrong shard count')
  return shards
}
