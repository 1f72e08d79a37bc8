/**
 * The libp2p node under the mesh: TCP, Noise, yamux, nothing else (no discovery,
 * no DHT, no identify, no relay): members find each other in the cluster map,
 * and every extra service would be one more way in for a stranger.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { ensurePromiseWithResolvers } from './compat.js'
import { toListenMultiaddr } from './addresses.js'

export interface MeshNodeInit {
  privateKey: PrivateKey
  listen: string
  /** Whether a connection from or to this peer is allowed; called after Noise proved the peer's key. */
  admit: (peerId: PeerId, direction: 'inbound' | 'outbound') => boolean
  dialTimeoutMs: number
  connectionsMax: number
}

/** Creates (does not start) the libp2p node. */
export async function createMeshNode(init: MeshNodeInit): Promise<Libp2p> {
  ensurePromiseWithResolvers()
  return createLibp2p({
    start: false,
    privateKey: init.privateKey,
    addresses: { listen: [toListenMultiaddr(init.listen).toString()] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // The gate sits on the encrypted connection: only then is the remote key proven.
    connectionGater: {
      denyInboundEncryptedConnection: (peerId) => !init.admit(peerId, 'inbound'),
      denyOutboundEncryptedConnection: (peerId) => !init.admit(peerId, 'outbound'),
    },
    // Heartbeats are the mesh's own (HEARTBEAT_PROTOCOL); libp2p's ping monitor would only add streams.
    connectionMonitor: { enabled: false },
    connectionManager: {
      maxConnections: init.connectionsMax,
      dialTimeout: init.dialTimeoutMs,
      // All members of a dev cluster share 127.0.0.1; the default (5/s per host) would throttle them.
      inboundConnectionThreshold: 100,
      reconnectRetries: 0,
    },
  })
}
