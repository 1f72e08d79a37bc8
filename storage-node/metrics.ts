/**
 * The storage node's Prometheus metrics, in base units under `cairn_storage_node_`.
 * Created once per registry and handed to the components that update them.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface StoreMetrics {
  shards: Gauge
  shardBytes: Gauge
  addressMapBytes: Gauge
  fsyncSeconds: Histogram
  compactionReclaimedBytes: Counter
  compactionSegments: Counter
  compactionRunning: Gauge
  badShards: Counter
}

/** The journal replicas' metrics (storage-node/journal/). */
export interface JournalMetrics {
  journalAppends: Counter
  journalAppendBytes: Counter
  journalFsyncSeconds: Histogram
  journalFencedRequests: Counter
  journalDiskBytes: Gauge
  journalCollected: Counter
}

export interface StorageNodeMetrics extends StoreMetrics, JournalMetrics {
  /** Labels: method, code (gRPC status name). */
  requestSeconds: Histogram<'method' | 'code'>
  inFlightRequests: Gauge
}

/** Registers every storage-node metric on `registry`. */
export function createStorageNodeMetrics(registry: Registry): StorageNodeMetrics {
  const registers = [registry]
  const p = 'cairn_storage_node_'
  return {
    shards: new Gauge({ name: `${p}shards`, help: 'Shards stored (including ones found corrupt).', registers }),
    shardBytes: new Gauge({ name: `${p}shard_bytes`, help: 'Encoded bytes of the shards stored.', registers }),
    addressMapBytes: new Gauge({ name: `${p}address_map_bytes`, help: 'Memory of the in-memory shard address map (grows with the shard count).', registers }),
    fsyncSeconds: new Histogram({
      name: `${p}fsync_duration_seconds`,
      help: 'Time for one group-commit fsync of segment data.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    compactionReclaimedBytes: new Counter({ name: `${p}compaction_reclaimed_bytes_total`, help: 'Segment bytes freed by compaction.', registers }),
    compactionSegments: new Counter({ name: `${p}compaction_segments_total`, help: 'Segments compacted.', registers }),
    compactionRunning: new Gauge({ name: `${p}compaction_running`, help: '1 while a segment is being compacted.', registers }),
    badShards: new Counter({ name: `${p}bad_shards_found_total`, help: 'Stored shards that failed verification on read or compaction.', registers }),
    requestSeconds: new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'gRPC request latency by method and status code.',
      labelNames: ['method', 'code'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    }),
    inFlightRequests: new Gauge({ name: `${p}in_flight_requests`, help: 'gRPC requests being served.', registers }),
    journalAppends: new Counter({ name: `${p}journal_appends_total`, help: 'Journal records written.', registers }),
    journalAppendBytes: new Counter({ name: `${p}journal_append_bytes_total`, help: 'Journal record bytes written (headers included).', registers }),
    journalFsyncSeconds: new Histogram({
      name: `${p}journal_fsync_duration_seconds`,
      help: 'Time for one group-commit fsync of a journal segment.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    journalFencedRequests: new Counter({ name: `${p}journal_fenced_requests_total`, help: 'Journal requests refused for a stale epoch.', registers }),
    journalDiskBytes: new Gauge({ name: `${p}journal_disk_bytes`, help: 'Bytes in journal segment files.', registers }),
    journalCollected: new Counter({ name: `${p}journal_collected_total`, help: 'Journal replicas garbage collection removed: of deleted volumes, or replaced by their engine.', registers }),
  }
}
