/**
 * Volume engine metrics on an injected registry, labelled by volume. Registering
 * twice on one registry (several engines in one process) reuses the series.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export type EngineState = 'recovering' | 'serving' | 'failed' | 'fenced' | 'stopped'
export const ENGINE_STATES: readonly EngineState[] = ['recovering', 'serving', 'failed', 'fenced', 'stopped']

export interface VolumeMetrics {
  dirtyBytes: Gauge<'volume'>
  flushSeconds: Histogram<'volume'>
  flushFailures: Counter<'volume'>
  flushedChunks: Counter<'volume'>
  flushedBytes: Counter<'volume'>
  zeroChunksSkipped: Counter<'volume'>
  backpressureWaits: Counter<'volume'>
  state: Gauge<'volume' | 'state'>
}

function reuse<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create()
}

export function createVolumeMetrics(registry: Registry): VolumeMetrics {
  const registers = [registry]
  const counter = (name: string, help: string) =>
    reuse(registry, name, () => new Counter({ name, help, labelNames: ['volume'] as const, registers }))
  return {
    dirtyBytes: reuse(registry, 'cairn_volume_dirty_bytes', () =>
      new Gauge({ name: 'cairn_volume_dirty_bytes', help: 'Bytes held by the dirty map, not yet flushed to chunks', labelNames: ['volume'] as const, registers }),
    ),
    flushSeconds: reuse(registry, 'cairn_volume_flush_duration_seconds', () =>
      new Histogram({
        name: 'cairn_volume_flush_duration_seconds',
        help: 'Time from a dirty-map cut to the new head being recorded',
        labelNames: ['volume'] as const,
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers,
      }),
    ),
    flushFailures: counter('cairn_volume_flush_failures_total', 'Flush attempts that failed and will be retried'),
    flushedChunks: counter('cairn_volume_flushed_chunks_total', 'Data chunks written by the flusher'),
    flushedBytes: counter('cairn_volume_flushed_bytes_total', 'Bytes of data chunks written by the flusher'),
    zeroChunksSkipped: counter('cairn_volume_zero_chunks_skipped_total', 'Flushed chunks that were all zeroes, so not stored'),
    backpressureWaits: counter('cairn_volume_backpressure_waits_total', 'Requests that waited for the flusher because the dirty map was full'),
    state: reuse(registry, 'cairn_volume_engine_state', () =>
      new Gauge({ name: 'cairn_volume_engine_state', help: '1 for the engine state the volume is in', labelNames: ['volume', 'state'] as const, registers }),
    ),
  }
}
