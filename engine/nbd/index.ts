/** The NBD server: what the engine and the CLI import. */
export { NbdServer, type NbdServerInit, type NbdServerComponents, type NbdListenAddress } from './server.js'
export {
  staticExports,
  validateBlockSize,
  DEFAULT_BLOCK_SIZE,
  type NbdBackend,
  type ExportResolver,
  type Extent,
  type BlockSizeConstraints,
  type WriteOptions,
  type ZeroOptions,
} from './backend.js'
export { MemoryBackend, type MemoryBackendInit } from './memory-backend.js'
export { growableBackend, growableExports, SIZE_CEILING_MAX_BYTES } from './growable.js'
export { FastZeroUnsupportedError, NbdProtocolError, NbdRequestRejectedError, toNbdErrno } from './errors.js'
