/**
 * Writes the volume head with compare-and-swap on the revision and the epoch as
 * fence. A lost CAS (someone else wrote the volume's status) re-reads and retries
 * a bounded number of times; a moved epoch is fencing, never retried.
 */
import { assert } from '../../core/errors.js'
import { ConflictError, EpochFencedError, type ControlPlane, type Volume, type VolumeHead } from '../../control-plane/types.js'

export class HeadWriter {
  constructor(
    private readonly controlPlane: ControlPlane,
    private readonly volumeName: string,
    private readonly epoch: number,
    private revision: string,
    private readonly retriesMax: number,
  ) {}

  /** Records `head`; throws EpochFencedError once another attachment holds the volume. */
  async write(head: VolumeHead): Promise<Volume> {
    for (let attempt = 0; ; attempt++) {
      try {
        const volume = await this.controlPlane.updateVolumeHead(this.volumeName, { expectedRevision: this.revision, epoch: this.epoch }, head)
        this.revision = volume.revision
        return volume
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= this.retriesMax) throw err
        await this.refresh()
      }
    }
  }

  /** Applies a status patch under the same CAS discipline (journal replicas, health). */
  async patch(update: (volume: Volume) => Promise<Volume> | undefined): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const volume = await this.refresh()
      try {
        const updated = await update(volume)
        if (updated !== undefined) this.revision = updated.revision
        return
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= this.retriesMax) throw err
      }
    }
  }

  /** Re-reads the volume; fails with EpochFencedError when our epoch is no longer current. */
  async refresh(): Promise<Volume> {
    const volume = await this.controlPlane.getVolume(this.volumeName)
    if (volume.status.epoch !== this.epoch) throw new EpochFencedError(this.volumeName, this.epoch, volume.status.epoch)
    assert(volume.revision.length > 0, 'a stored volume has a revision')
    this.revision = volume.revision
    return volume
  }
}
