/**
 * Typed errors of the journal replica. They cross the wire by name (core/grpc.ts),
 * so the engine's journal client rebuilds the same classes from a status.
 */
import { CairnError } from '../../core/errors.js'

/**
 * The caller's epoch is lower than the highest one this journal was opened at:
 * another engine took the volume over, so this one may never write again.
 * Same name as the control plane's error for the same condition.
 */
export class EpochFencedError extends CairnError {
  override readonly name = 'EpochFencedError'
  readonly kind = 'failed-precondition'
}

/** A call other than Open carried an epoch above the highest seen: Open first. */
export class JournalNotOpenError extends CairnError {
  override readonly name = 'JournalNotOpenError'
  readonly kind = 'failed-precondition'
}

/** A record's seq is not the next one expected (a gap, or a step backwards past the log). */
export class JournalSequenceError extends CairnError {
  override readonly name = 'JournalSequenceError'
  readonly kind = 'failed-precondition'
}

/** A record re-sent with a seq already stored carries different content. */
export class JournalConflictError extends CairnError {
  override readonly name = 'JournalConflictError'
  readonly kind = 'failed-precondition'
}

/** A malformed request: uid, epoch, op, checkpoint, or a record over the size limit. */
export class JournalRequestError extends CairnError {
  override readonly name = 'JournalRequestError'
  readonly kind = 'invalid-argument'
}

/** The journal was dropped (its volume was deleted). */
export class JournalDroppedError extends CairnError {
  override readonly name = 'JournalDroppedError'
  readonly kind = 'not-found'
}

/** A stored record failed its CRC on read (bit rot after it was written; torn tails are repaired at load). */
export class JournalCorruptError extends CairnError {
  override readonly name = 'JournalCorruptError'
  readonly kind = 'data-loss'
}

/** A Collect whose cutoff is in this node's future: the clocks disagree, and a journal being written could go. */
export class JournalCutoffError extends CairnError {
  override readonly name = 'JournalCutoffError'
  readonly kind = 'failed-precondition'
}

/** The journal is being collected (its volume is gone): nothing may open it meanwhile. */
export class JournalCollectingError extends CairnError {
  override readonly name = 'JournalCollectingError'
  readonly kind = 'unavailable'
}
