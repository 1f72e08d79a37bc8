/** Typed errors of the engine's replicated journal. */
import { CairnError } from '../../core/errors.js'

export { EpochFencedError } from '../../storage-node/journal/errors.js'

/**
 * Durability cannot be reached: no replica answered, a dead replica could not be
 * replaced in time, or none was left to replace it. Terminal for this journal
 * object: re-open (recovery) to continue.
 */
export class JournalUnavailableError extends CairnError {
  override readonly name = 'JournalUnavailableError'
  readonly kind = 'unavailable'
}

/** A record read back from the replicas does not decode as a journal op (a bug, or a foreign writer). */
export class JournalOpFormatError extends CairnError {
  override readonly name = 'JournalOpFormatError'
  readonly kind = 'data-loss'
}
