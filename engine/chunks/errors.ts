/**
 * Typed errors of the chunk store and the manifest. Each has a stable `name`;
 * callers branch on `name` or `kind`, never on the message.
 */
import { CairnError, type ErrorKind } from '../../core/errors.js'

/** Fewer shards than the write quorum became durable because storage nodes were unreachable; retry later. */
export class ChunkWriteError extends CairnError {
  override readonly name = 'ChunkWriteError'
  readonly kind = 'unavailable'
}

/**
 * A storage node refused a put for a reason other than being unreachable (a
 * full disk, a rejected batch): retrying the same call will not help. The kind
 * is the node's error kind, so the edges map it faithfully.
 */
export class ChunkWriteRejectedError extends CairnError {
  override readonly name = 'ChunkWriteRejectedError'
  readonly kind: ErrorKind
  constructor(message: string, options: { cause: unknown; kind: ErrorKind }) {
    super(message, { cause: options.cause })
    this.kind = options.kind
  }
}

/**
 * Fewer than k good shards of a chunk could be found. Kind `unavailable` when
 * some shard's node could not be reached (it may come back), `data-loss` when
 * every node answered and the shards are gone or corrupt.
 */
export class ChunkUnavailableError extends CairnError {
  override readonly name = 'ChunkUnavailableError'
  readonly kind: 'unavailable' | 'data-loss'
  constructor(
    /** The chunk's CID, string form. */
    readonly cid: string,
    kind: 'unavailable' | 'data-loss',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.kind = kind
  }
}

/** A storage node did not answer within the request deadline; treated like an unreachable node. */
export class NodeDeadlineError extends CairnError {
  override readonly name = 'NodeDeadlineError'
  readonly kind = 'unavailable'
}

/**
 * A manifest page verified against its CID but is not a well-formed page
 * (wrong version, level, slot order, link codec): written by a bug or by
 * something else. Never guessed around.
 */
export class ManifestPageError extends CairnError {
  override readonly name = 'ManifestPageError'
  readonly kind = 'data-loss'
}
