/**
 * Deterministic shards for tests and benchmarks: real CIDs (CIDv1, raw, sha2-256 of
 * a seed) and payloads from a seeded generator, so any failure can be replayed.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { encodeShard, type Shard } from '../core/shard.js'
import type { StorageNodeInit } from './daemon.js'
import { fillSeeded } from '../core/seeded-random.js'

/** A valid binary CIDv1 derived from `seed`. */
export function fixtureCid(seed: string): Uint8Array {
  return CID.createV1(0x55, Digest.create(0x12, createHash('sha256').update(seed).digest())).bytes
}

/** Shard `index` of a 4+2 chunk named by `seed`, with a seeded payload of `payloadBytes`. */
export function fixtureShard(seed: number, index = 0, payloadBytes = 1024): Shard {
  const payload = fillSeeded(new Uint8Array(payloadBytes), seed * 7919 + index + 1)
  return encodeShard({ chunkCid: fixtureCid(`chunk-${seed}`), k: 4, m: 2, index, chunkLengthBytes: payloadBytes * 4, payload })
}

/**
 * Init for a storage node in this process on OS-chosen loopback ports, with small
 * limits and no background compaction; tests and benches override what they exercise.
 */
export function loopbackNodeInit(dataDir: string, overrides: Partial<StorageNodeInit> = {}): StorageNodeInit {
  return {
    dataDir,
    listen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    segmentSizeBytes: 4 * 1024 * 1024,
    compactionLiveRatio: 0.5,
    compactionIntervalMs: 0,
    maxBatchShards: 64,
    maxBatchBytes: 4 * 1024 * 1024,
    maxShardBytes: 1024 * 1024,
    maxInFlightRequests: 64,
    pendingMaxBytes: 16 * 1024 * 1024,
    shutdownGraceMs: 1000,
    ...overrides,
  }
}
