/** The volume engine: what the CSI node plugin, `cairn dev` and the CLI import. */
export { attachVolume, type AttachInit, type AttachComponents, type JournalFactory, type JournalFactoryInit } from './attach.js'
export { VolumeEngine, MAX_IO_BYTES, isFencingError } from './engine.js'
export { VolumeFencedError, VolumeFailedError, JournalReplayError, VolumeAttachError } from './errors.js'
export type { VolumeEngineOptions } from './options.js'
export type { EngineState } from './metrics.js'
