/**
 * How the controller reaches the engine that holds an attached volume. A snapshot or
 * clone of an attached volume must include every write the engine acknowledged, and
 * only that engine knows them: it folds them into the head (a checkpoint) through its
 * admin API (engine/host). A volume with no attachment has no unflushed writes
 * anywhere, so its control-plane head is already consistent.
 */
import type { Volume } from '../control-plane/types.js'
import { AdminClient } from '../engine/host/admin-client.js'
import { EngineUnavailableError } from './errors.js'

export interface VolumeEngines {
  /** Folds every acknowledged write of `volume` into its head; a no-op when it is not attached. Throws EngineUnavailableError when it is attached and its engine cannot be asked. */
  checkpoint(volume: Volume): Promise<void>
  /** Tells the engine holding `volume` its new size after the control plane grew it; a no-op when not attached or its engine is unknown (the engine reads the size when it next attaches). */
  resize(volume: Volume): Promise<void>
}

/** Finds the admin API address (`host:port`) of the engine serving `volume` as `nodeId`, or undefined when none is known. */
export type EngineLocator = (nodeId: string, volume: string) => Promise<string | undefined>

/** VolumeEngines over engine admin APIs found by `locate`. */
export class AdminVolumeEngines implements VolumeEngines {
  constructor(
    private readonly locate: EngineLocator,
    /** Deadline of one admin call; a checkpoint waits for a flush. @default 120000 */
    private readonly timeoutMs = 120_000,
    /** The cluster token node plugins require (csi-driver/node-admin.ts), read when first needed. @default none */
    private readonly token?: () => Promise<string | undefined>,
  ) {}

  async checkpoint(volume: Volume): Promise<void> {
    const attachment = volume.status.attachment
    if (attachment === null) return
    const admin = await this.adminFor(attachment.nodeId, volume.name)
    if (admin === undefined) {
      throw new EngineUnavailableError(
        `volume ${volume.name} is attached to ${attachment.nodeId} and no engine admin API is known for that node; ` +
          'retry when the engine is reachable so the result includes every acknowledged write',
      )
    }
    try {
      await admin.checkpoint(volume.name)
    } catch (err) {
      throw new EngineUnavailableError(`checkpoint of ${volume.name} on ${attachment.nodeId} failed: ${(err as Error).message}`, { cause: err })
    }
  }

  async resize(volume: Volume): Promise<void> {
    const attachment = volume.status.attachment
    if (attachment === null) return
    await (await this.adminFor(attachment.nodeId, volume.name))?.resize(volume.name, volume.sizeBytes)
  }

  private async adminFor(nodeId: string, volume: string): Promise<AdminClient | undefined> {
    const address = await this.locate(nodeId, volume)
    return address === undefined ? undefined : new AdminClient({ address, timeoutMs: this.timeoutMs, token: await this.token?.() })
  }
}
