/** The engine's replicated, epoch-fenced volume journal. */
export { ReplicatedJournal, type JournalMember, type ReplicatedJournalInit, type ReplicatedJournalComponents } from './replicated-journal.js'
export { JournalUnavailableError, JournalOpFormatError, EpochFencedError } from './errors.js'
export { encodeOp, decodeOp } from './op-codec.js'
