/**
 * Node.js flags every storage-node process starts with. `cairn dev` puts them before the
 * CLI in each node's command and the operator in the DaemonSet container's command; they
 * cannot travel in NODE_OPTIONS, which refuses --initial-old-space-size.
 *
 * Why (docs/adr/0025-storage-node-heap-floor.md): serving reads allocates fresh buffers
 * per shard and per message (the read, the protobuf message, gRPC's framed copy). V8
 * answers that external-memory pressure with scavenges, each promoting a little, and with
 * a live heap of ~25 MB the old generation's limit sat just above it: a full mark-compact
 * every few MB promoted, 1.5-2 a second per node under sequential reads. A 128 MiB floor
 * for the old generation cut a node's CPU per MiB read from 14.6-15.9 ms to 5.8-6.3 ms for
 * 20-40 MiB more peak RSS per node.
 */
export const STORAGE_NODE_RUNTIME_FLAGS: readonly string[] = ['--initial-old-space-size=128']
