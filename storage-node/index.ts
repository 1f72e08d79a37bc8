/** Public API of the storage node for other components: the store contract, the client, the daemon. */
export * from './shard-store.js'
export { ShardClient, PutStream, SHARD_SERVICE_ERRORS, type ShardClientInit } from './shard-client.js'
export { createSegmentShardStore, SegmentShardStore, ShardReadError, type SegmentStoreInit, type SegmentStoreComponents } from './segment-store.js'
export { StorageNode, type StorageNodeInit, type StorageNodeComponents, type StorageNodeDurabilityInit } from './daemon.js'
export { createStorageNodeMetrics, type StorageNodeMetrics, type StoreMetrics } from './metrics.js'
export { defaultShardServiceLimits, type ShardServiceLimits } from './shard-service.js'
