/** Typed errors of the erasure codec. */
import { CairnError } from '../errors.js'

/** Fewer than k shards survive: the chunk cannot be rebuilt from what is at hand. */
export class InsufficientShardsError extends CairnError {
  override readonly name = 'InsufficientShardsError'
  readonly kind = 'data-loss'
  readonly presentShards: number
  readonly requiredShards: number

  constructor(presentShards: number, requiredShards: number) {
    super(`only ${presentShards} shards present, ${requiredShards} needed to reconstruct`)
    this.presentShards = presentShards
    this.requiredShards = requiredShards
  }
}

/** Shards handed to the codec do not fit together: wrong count, sizes that differ, a length that does not match. */
export class InvalidShardsError extends CairnError {
  override readonly name = 'InvalidShardsError'
  readonly kind = 'invalid-argument'
}
