/**
 * NBD server metrics on an injected registry. Registering twice on one registry
 * (two servers in one process, or a restart in tests) reuses the existing series.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface NbdMetrics {
  requests: Counter<'command' | 'result'>
  requestSeconds: Histogram<'command'>
  readBytes: Counter
  writtenBytes: Counter
  connections: Gauge
  protocolErrors: Counter<'reason'>
}

function reuse<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create()
}

export function createNbdMetrics(registry: Registry): NbdMetrics {
  const registers = [registry]
  return {
    requests: reuse(registry, 'cairn_nbd_requests_total', () =>
      new Counter({
        name: 'cairn_nbd_requests_total',
        help: 'NBD transmission requests by command and result (ok or the NBD errno name)',
        labelNames: ['command', 'result'] as const,
        registers,
      }),
    ),
    requestSeconds: reuse(registry, 'cairn_nbd_request_duration_seconds', () =>
      new Histogram({
        name: 'cairn_nbd_request_duration_seconds',
        help: 'Time from a request being parsed to its reply being written',
        labelNames: ['command'] as const,
        buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers,
      }),
    ),
    readBytes: reuse(registry, 'cairn_nbd_read_bytes_total', () =>
      new Counter({ name: 'cairn_nbd_read_bytes_total', help: 'Bytes returned by successful NBD reads', registers }),
    ),
    writtenBytes: reuse(registry, 'cairn_nbd_written_bytes_total', () =>
      new Counter({ name: 'cairn_nbd_written_bytes_total', help: 'Bytes stored by successful NBD writes', registers }),
    ),
    connections: reuse(registry, 'cairn_nbd_connections', () =>
      new Gauge({ name: 'cairn_nbd_connections', help: 'Open NBD client connections', registers }),
    ),
    protocolErrors: reuse(registry, 'cairn_nbd_protocol_errors_total', () =>
      new Counter({
        name: 'cairn_nbd_protocol_errors_total',
        help: 'Connections ended because the client broke the protocol, by reason',
        labelNames: ['reason'] as const,
        registers,
      }),
    ),
  }
}
