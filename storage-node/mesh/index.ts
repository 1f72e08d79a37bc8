/** The libp2p storage mesh: see storage-mesh.ts and docs/adr/0019-storage-mesh.md. */
export { StorageMesh, type StorageMeshInit, type StorageMeshComponents } from './storage-mesh.js'
export { loadOrCreatePeerIdentity, identityPath, type PeerIdentity } from './identity.js'
export { MeshUnavailableError, PeerIdentityError, MeshMessageTooLargeError, MeshProtocolError } from './errors.js'
export { SHARD_PROTOCOL } from './codec.js'
export { HEARTBEAT_PROTOCOL } from './heartbeat.js'
export type { PeerShards, PeerLiveness, PeerCallOptions } from './types.js'
