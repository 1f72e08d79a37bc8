/** Typed errors of the codec worker pool, and how errors cross the thread boundary. */
import { CairnError, InvalidArgumentError, ShuttingDownError } from '../errors.js'
import { ChunkIntegrityError, HasherNotLoadedError } from '../cid.js'
import { InsufficientShardsError, InvalidShardsError } from '../erasure/errors.js'
import { KernelUnavailableError } from '../erasure/wasm-kernel.js'

/** A worker thread died (uncaught error, out of memory, exit) while it held this job; the pool replaced it. */
export class WorkerCrashedError extends CairnError {
  override readonly name = 'WorkerCrashedError'
  readonly kind = 'internal'
}

/** A worker failed with an error that has no typed counterpart on this side. */
export class CodecWorkerError extends CairnError {
  override readonly name = 'CodecWorkerError'
  readonly kind = 'internal'
}

/** What crosses postMessage: structured clone drops an Error's class, so send the name and rebuild it. */
export interface SerializedError {
  name: string
  message: string
  presentShards?: number
  requiredShards?: number
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof InsufficientShardsError) {
    return { name: err.name, message: err.message, presentShards: err.presentShards, requiredShards: err.requiredShards }
  }
  if (err instanceof Error) return { name: err.name, message: err.message }
  return { name: 'Error', message: String(err) }
}

/** The typed error a worker reported, so callers on this thread can branch on its name and kind. */
export function deserializeError(e: SerializedError): Error {
  switch (e.name) {
    case 'InsufficientShardsError':
      return new InsufficientShardsError(e.presentShards ?? 0, e.requiredShards ?? 0)
    case 'ChunkIntegrityError':
      return new ChunkIntegrityError(e.message)
    case 'InvalidShardsError':
      return new InvalidShardsError(e.message)
    case 'InvalidArgumentError':
      return new InvalidArgumentError(e.message)
    case 'HasherNotLoadedError':
      return new HasherNotLoadedError(e.message)
    case 'KernelUnavailableError':
      return new KernelUnavailableError(e.message)
    case 'ShuttingDownError':
      return new ShuttingDownError(e.message)
    default:
      return new CodecWorkerError(`${e.name}: ${e.message}`)
  }
}
