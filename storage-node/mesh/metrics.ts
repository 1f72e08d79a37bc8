/** The mesh's Prometheus metrics, in base units under `cairn_mesh_`. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface MeshMetrics {
  /** Labels: direction (inbound, outbound). */
  refusedConnections: Counter<'direction'>
  /** Labels: member. 1 while the member answers heartbeats within the alive window. */
  peerUp: Gauge<'member'>
  heartbeatRttSeconds: Histogram
  /** Heartbeat streams this node opened: one per member, more only when a stream broke (peer restart, timeout). */
  heartbeatStreamsOpened: Counter
  /** Labels: protocol. */
  sentBytes: Counter<'protocol'>
  /** Labels: protocol. */
  receivedBytes: Counter<'protocol'>
  /** Calls this node made. Labels: method (has, get, put), outcome (ok or the error kind). */
  calls: Counter<'method' | 'outcome'>
  /** Requests this node served. Labels: method (has, get, put, unknown), outcome (ok or the error kind). */
  servedRequests: Counter<'method' | 'outcome'>
}

/** Registers every mesh metric on `registry` (once per registry). */
export function createMeshMetrics(registry: Registry): MeshMetrics {
  const registers = [registry]
  const p = 'cairn_mesh_'
  return {
    refusedConnections: new Counter({
      name: `${p}refused_connections_total`,
      help: 'Connections refused because the peer is not the cluster-map member expected (or in no map at all).',
      labelNames: ['direction'],
      registers,
    }),
    peerUp: new Gauge({ name: `${p}peer_up`, help: '1 when the member answered a heartbeat within the alive window.', labelNames: ['member'], registers }),
    heartbeatRttSeconds: new Histogram({
      name: `${p}heartbeat_rtt_seconds`,
      help: 'Round-trip time of answered heartbeats.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    heartbeatStreamsOpened: new Counter({
      name: `${p}heartbeat_streams_opened_total`,
      help: 'Long-lived heartbeat streams opened to members; growth beyond one per member means streams keep breaking.',
      registers,
    }),
    sentBytes: new Counter({ name: `${p}sent_bytes_total`, help: 'Application bytes sent on mesh streams.', labelNames: ['protocol'], registers }),
    receivedBytes: new Counter({ name: `${p}received_bytes_total`, help: 'Application bytes received on mesh streams.', labelNames: ['protocol'], registers }),
    calls: new Counter({ name: `${p}calls_total`, help: 'Shard-transfer calls made to peers, by outcome.', labelNames: ['method', 'outcome'], registers }),
    servedRequests: new Counter({
      name: `${p}served_requests_total`,
      help: 'Shard-transfer requests served to peers, by outcome.',
      labelNames: ['method', 'outcome'],
      registers,
    }),
  }
}
