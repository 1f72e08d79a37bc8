/** Scrub: re-read and verify every local shard at a set pace (docs/adr/0020). */
export { Scrubber, type ScrubberInit, type ScrubberComponents, type ScrubPassReport } from './scrubber.js'
export { TokenBucket, PassAbortedError, systemClock, type PaceClock, type TokenBucketInit } from './pacing.js'
export { StateFileError } from './state-file.js'
