/**
 * The chunk store's Prometheus metrics, in base units under `cairn_engine_`.
 * Several chunk stores (one per volume or block store) may share a registry,
 * so each metric is taken from the registry when it is already there.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** Why a shard could not be used. */
export type BadShardReason = 'missing' | 'corrupt' | 'unreachable' | 'mismatch' | 'error'

export interface ChunkStoreMetrics {
  chunkPuts: Counter
  chunkPutBytes: Counter
  chunkGets: Counter
  chunkGetBytes: Counter
  putSeconds: Histogram
  getSeconds: Histogram
  cacheHits: Counter
  cacheMisses: Counter
  cacheBytes: Gauge
  degradedWrites: Counter
  degradedReads: Counter
  badShards: Counter<'reason'>
  inFlightPutBytes: Gauge
}

const LATENCY_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]

/** Registers (or finds) every chunk-store metric on `registry`. */
export function createChunkStoreMetrics(registry: Registry): ChunkStoreMetrics {
  const p = 'cairn_engine_'
  const registers = [registry]
  const counter = <L extends string = string>(name: string, help: string, labelNames: L[] = []): Counter<L> =>
    (registry.getSingleMetric(p + name) as Counter<L> | undefined) ?? new Counter<L>({ name: p + name, help, labelNames, registers })
  const gauge = (name: string, help: string): Gauge =>
    (registry.getSingleMetric(p + name) as Gauge | undefined) ?? new Gauge({ name: p + name, help, registers })
  const histogram = (name: string, help: string): Histogram =>
    (registry.getSingleMetric(p + name) as Histogram | undefined) ?? new Histogram({ name: p + name, help, buckets: LATENCY_BUCKETS_SECONDS, registers })
  return {
    chunkPuts: counter('chunk_puts_total', 'Chunks written (each chunk of a putChunks call, duplicates in one call once).'),
    chunkPutBytes: counter('chunk_put_bytes_total', 'Bytes of the chunks written, before erasure coding.'),
    chunkGets: counter('chunk_gets_total', 'Chunks read, cache hits included.'),
    chunkGetBytes: counter('chunk_get_bytes_total', 'Bytes of the chunks read.'),
    putSeconds: histogram('chunk_put_duration_seconds', 'Time of one putChunks call.'),
    getSeconds: histogram('chunk_get_duration_seconds', 'Time of one getChunks call.'),
    cacheHits: counter('chunk_cache_hits_total', 'Chunk reads served from the chunk cache.'),
    cacheMisses: counter('chunk_cache_misses_total', 'Chunk reads that went to the storage nodes.'),
    cacheBytes: gauge('chunk_cache_bytes', 'Bytes held by the chunk cache.'),
    degradedWrites: counter('chunks_degraded_writes_total', 'Chunks written with fewer than k+m durable shards (repair must complete them).'),
    degradedReads: counter('chunks_degraded_reads_total', 'Chunks that needed parity shards (or other members) to be read.'),
    badShards: counter('bad_shards_total', 'Shards found missing, corrupt, mismatched or on an unreachable node while reading.', ['reason']),
    inFlightPutBytes: gauge('chunk_put_in_flight_bytes', 'Chunk bytes of puts in progress (bounded: backpressure).'),
  }
}
