/** The chunk store and the manifest: the volume engine's storage below the journal. */
export { ErasureChunkStore, type ChunkPolicy, type ChunkStoreInit, type ChunkStoreComponents, type ClusterMapProvider, type BadShardReport } from './chunk-store.js'
export { MerkleManifest, type ManifestInit, type ManifestComponents } from './manifest.js'
export { createNodeClientPool, type NodeClientPool, type NodeClientPoolInit, type ShardNodeClient } from './node-clients.js'
export { ChunkUnavailableError, ChunkWriteError, ChunkWriteRejectedError, ManifestPageError, NodeDeadlineError } from './errors.js'
export { FANOUT as MANIFEST_FANOUT, PAGE_FORMAT_VERSION as MANIFEST_PAGE_FORMAT_VERSION } from './manifest-page.js'
export type { BadShardReason } from './metrics.js'
