/** Garbage collection's Prometheus metrics, labelled by block store. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface GcMetrics {
  runs: Counter<'block_store' | 'outcome'>
  freedBytes: Counter<'block_store'>
  sweptShards: Counter<'block_store'>
  collectedJournals: Counter<'block_store'>
  markedChunks: Gauge<'block_store'>
  lastCompletion: Gauge<'block_store'>
  markSeconds: Histogram<'block_store'>
  sweepSeconds: Histogram<'block_store'>
}

const DURATION_BUCKETS_SECONDS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]

export function createGcMetrics(registry: Registry): GcMetrics {
  const registers = [registry]
  return {
    runs: new Counter({ name: 'cairn_gc_runs_total', help: 'Garbage collections run, by outcome (succeeded, failed).', labelNames: ['block_store', 'outcome'], registers }),
    freedBytes: new Counter({ name: 'cairn_gc_freed_bytes_total', help: 'Encoded shard bytes deleted by sweeps (dry runs excluded).', labelNames: ['block_store'], registers }),
    sweptShards: new Counter({ name: 'cairn_gc_swept_shards_total', help: 'Shards deleted by sweeps (dry runs excluded).', labelNames: ['block_store'], registers }),
    collectedJournals: new Counter({
      name: 'cairn_gc_collected_journals_total',
      help: 'Journal replicas deleted from storage nodes, of deleted volumes or replaced ones (dry runs excluded).',
      labelNames: ['block_store'],
      registers,
    }),
    markedChunks: new Gauge({ name: 'cairn_gc_marked_chunks', help: 'Chunk references the last mark found reachable.', labelNames: ['block_store'], registers }),
    lastCompletion: new Gauge({
      name: 'cairn_gc_last_completion_timestamp_seconds',
      help: 'Unix time the last successful garbage collection finished.',
      labelNames: ['block_store'],
      registers,
    }),
    markSeconds: new Histogram({ name: 'cairn_gc_mark_duration_seconds', help: 'Time to mark (roots, manifest walk, filter).', labelNames: ['block_store'], buckets: DURATION_BUCKETS_SECONDS, registers }),
    sweepSeconds: new Histogram({ name: 'cairn_gc_sweep_duration_seconds', help: 'Time for every storage node to sweep.', labelNames: ['block_store'], buckets: DURATION_BUCKETS_SECONDS, registers }),
  }
}
