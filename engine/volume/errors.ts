/** Errors of the volume engine. Each picks a kind; engine/nbd/errors.ts maps kinds to NBD errnos. */
import { CairnError } from '../../core/errors.js'

/**
 * A newer attachment took the volume over (the journal or the control plane
 * refused this engine's epoch). The engine serves nothing more and never writes
 * a head again. Kind 'unavailable', so NBD clients see EIO: their device is gone.
 */
export class VolumeFencedError extends CairnError {
  override readonly name = 'VolumeFencedError'
  readonly kind = 'unavailable'
}

/**
 * The engine cannot make progress: its journal failed (the order of records is
 * then unknown, so only a re-attach, which replays what the replicas hold, is
 * safe) or flushes kept failing past the retry budget. Requests fail with EIO.
 */
export class VolumeFailedError extends CairnError {
  override readonly name = 'VolumeFailedError'
  readonly kind = 'unavailable'
}

/** The journal handed back records that cannot be replayed (gaps, bad ranges): refuse to serve rather than guess. */
export class JournalReplayError extends CairnError {
  override readonly name = 'JournalReplayError'
  readonly kind = 'data-loss'
}

/** The volume cannot be attached as asked (policy or size out of what the engine supports). */
export class VolumeAttachError extends CairnError {
  override readonly name = 'VolumeAttachError'
  readonly kind = 'failed-precondition'
}
