/**
 * Typed errors of the storage mesh. Every failure to reach or trust a member is
 * kind `unavailable` (the PeerShards contract: callers retry on a later pass);
 * a bad identity file stops the node (`failed-precondition`), because silently
 * replacing it would change the node's peer id under the cluster map.
 */
import { CairnError } from '../../core/errors.js'

/** The member cannot be called now: not in the map, no mesh address, refused, unreachable or timed out. */
export class MeshUnavailableError extends CairnError {
  override readonly name = 'MeshUnavailableError'
  readonly kind = 'unavailable'
}

/** The identity file exists but cannot be read or parsed; it is never regenerated behind the operator's back. */
export class PeerIdentityError extends CairnError {
  override readonly name = 'PeerIdentityError'
  readonly kind = 'failed-precondition'
}

/** A frame is larger than the mesh's `maxMessageBytes`; the stream is closed. */
export class MeshMessageTooLargeError extends CairnError {
  override readonly name = 'MeshMessageTooLargeError'
  readonly kind = 'resource-exhausted'
}

/** A frame or request does not follow the protocol; the stream is closed. */
export class MeshProtocolError extends CairnError {
  override readonly name = 'MeshProtocolError'
  readonly kind = 'invalid-argument'
}
