/**
 * What the engine host needs from one attached volume, and the errors it raises.
 *
 * The host serves many volumes over one NBD server; each volume is attached by the
 * volume engine (engine/volume/) behind this small seam, so the host's lifecycle
 * (lazy or eager attach, detach on stop, admin operations) is tested on its own.
 */
import { CairnError } from '../../core/errors.js'
import type { NbdBackend } from '../nbd/index.js'

/** A volume attached by this process: its NBD face and the operations the admin API needs. */
export interface HostedVolume {
  readonly name: string
  /** What the NBD server reads and writes. */
  readonly backend: NbdBackend
  /**
   * Folds every write acknowledged before the call into the volume's head and records
   * that head in the control plane, so a snapshot or clone taken next includes them.
   */
  checkpoint(): Promise<void>
  /** Grows the attached volume to `sizeBytes` (the control plane was already updated). */
  resize(sizeBytes: number): Promise<void>
  /** A JSON view for the status page and `GET /v1/volumes`. */
  status(): Record<string, unknown>
  /** Final flush and checkpoint, then releases the attachment. Idempotent. */
  detach(): Promise<void>
}

/** Attaches the named volume: takes a new epoch, recovers its journal, returns it ready to serve. */
export type VolumeAttacher = (volumeName: string) => Promise<HostedVolume>

/** The volume exists but belongs to another block store than the one this engine serves. */
export class ForeignVolumeError extends CairnError {
  override readonly name = 'ForeignVolumeError'
  readonly kind = 'failed-precondition'
}

/** The admin API answered with an error; `remoteName` and `kind` are the server's. */
export class AdminApiError extends CairnError {
  override readonly name = 'AdminApiError'
  constructor(
    readonly kind: CairnError['kind'],
    readonly remoteName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** The engine's admin API could not be reached. */
export class EngineUnreachableError extends CairnError {
  override readonly name = 'EngineUnreachableError'
  readonly kind = 'unavailable'
}
