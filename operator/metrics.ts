/** The operator's Prometheus metrics, created once per process and shared by every leadership term. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface OperatorMetrics {
  reconcileDuration: Histogram<'kind'>
  reconcileErrors: Counter<'kind'>
  queueDepth: Gauge<'kind'>
  isLeader: Gauge
  gcRuns: Counter<'outcome'>
  gcFreedBytes: Counter
  gcDuration: Histogram
}

export function createOperatorMetrics(registry: Registry): OperatorMetrics {
  return {
    reconcileDuration: new Histogram({
      name: 'cairn_operator_reconcile_duration_seconds',
      help: 'Time one reconcile took, by kind.',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: 'cairn_operator_reconcile_errors_total',
      help: 'Reconciles that failed (and were retried with backoff), by kind.',
      labelNames: ['kind'],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'cairn_operator_queue_depth',
      help: 'Keys waiting in the work queue, by kind.',
      labelNames: ['kind'],
      registers: [registry],
    }),
    isLeader: new Gauge({
      name: 'cairn_operator_is_leader',
      help: '1 while this process holds the leader lease.',
      registers: [registry],
    }),
    gcRuns: new Counter({
      name: 'cairn_operator_gc_runs_total',
      help: 'Scheduled garbage collections, by outcome (succeeded, failed).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    gcFreedBytes: new Counter({
      name: 'cairn_operator_gc_freed_bytes_total',
      help: 'Bytes of shards scheduled garbage collections swept.',
      registers: [registry],
    }),
    gcDuration: new Histogram({
      name: 'cairn_operator_gc_duration_seconds',
      help: 'Time one successful scheduled garbage collection took (mark and sweep).',
      buckets: [1, 5, 30, 60, 300, 900, 3600],
      registers: [registry],
    }),
  }
}
