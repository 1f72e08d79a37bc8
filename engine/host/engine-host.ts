/**
 * EngineHost: every volume of one block store, served over one NBD server.
 *
 * It is the NBD server's ExportResolver: a volume is attached the first time a
 * client asks for it (or at start, in eager mode) and stays attached until the
 * host stops, when each one gets its final flush and releases its attachment.
 * The admin API (admin-api.ts) goes through the host so that snapshots and clones
 * of an attached volume include every write the engine has acknowledged.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { ShuttingDownError } from '../../core/errors.js'
import type { ControlPlane, Snapshot, Volume } from '../../control-plane/types.js'
import type { ExportResolver, NbdBackend } from '../nbd/index.js'
import { ForeignVolumeError, type HostedVolume, type VolumeAttacher } from './types.js'

export interface EngineHostInit {
  /** The block store whose volumes this host serves. */
  blockStore: string
  /** `eager` attaches every volume of the block store at start. @default 'lazy' */
  attach?: 'lazy' | 'eager'
  /** What the empty NBD export name means. @default none (the empty name is unknown) */
  defaultExport?: string
}

export interface EngineHostComponents {
  controlPlane: ControlPlane
  attachVolume: VolumeAttacher
  logger: Logger
  registry: Registry
}

interface HostMetrics {
  attached: Gauge
  attachSeconds: Histogram
  attachFailures: Counter
}

function createHostMetrics(registry: Registry): HostMetrics {
  return {
    attached: new Gauge({ name: 'cairn_engine_volumes_attached', help: 'Volumes attached by this engine', registers: [registry] }),
    attachSeconds: new Histogram({
      name: 'cairn_engine_attach_seconds',
      help: 'Time to attach a volume (epoch, journal recovery)',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    attachFailures: new Counter({ name: 'cairn_engine_attach_failures_total', help: 'Volume attaches that failed', registers: [registry] }),
  }
}

/** Volumes listed per control-plane page when enumerating a block store. */
const LIST_PAGE_SIZE = 500

export class EngineHost implements ExportResolver, Startable {
  private readonly volumes = new Map<string, Promise<HostedVolume>>()
  private readonly metrics: HostMetrics
  private stopping = false

  constructor(
    private readonly init: EngineHostInit,
    private readonly components: EngineHostComponents,
  ) {
    this.metrics = createHostMetrics(components.registry)
  }

  async start(): Promise<void> {
    if ((this.init.attach ?? 'lazy') === 'lazy') return
    for (const volume of await this.blockStoreVolumes()) {
      // One volume that cannot attach must not keep the others from being served.
      await this.attached(volume.name).catch(() => undefined)
    }
  }

  /** Detaches every volume (final flush each); volumes still attaching are detached once they finish. */
  async stop(): Promise<void> {
    this.stopping = true
    const pending = [...this.volumes.entries()]
    this.volumes.clear()
    await Promise.all(
      pending.map(async ([name, attaching]) => {
        const volume = await attaching.catch(() => undefined)
        if (volume === undefined) return
        try {
          await volume.detach()
          this.components.logger.info({ volume: name }, 'volume detached')
        } catch (err) {
          this.components.logger.error({ volume: name, err }, 'detach failed; the journal keeps every acknowledged write')
        }
      }),
    )
    this.metrics.attached.set(0)
  }

  async resolve(name: string): Promise<NbdBackend | undefined> {
    const volumeName = name === '' ? this.init.defaultExport : name
    if (volumeName === undefined || this.stopping) return undefined
    try {
      return (await this.attached(volumeName)).backend
    } catch (err) {
      // The NBD server answers "unknown export"; the reason is here, in the log.
      this.components.logger.warn({ volume: volumeName, err }, 'export not served')
      return undefined
    }
  }

  async list(): Promise<readonly string[]> {
    return (await this.blockStoreVolumes()).map((v) => v.name)
  }

  /** The attached volume, attaching it first if needed. Concurrent callers share one attach. */
  attached(volumeName: string): Promise<HostedVolume> {
    if (this.stopping) return Promise.reject(new ShuttingDownError('engine host is stopping'))
    let attaching = this.volumes.get(volumeName)
    if (attaching === undefined) {
      attaching = this.attachOnce(volumeName)
      this.volumes.set(volumeName, attaching)
      // A failed attach is forgotten so that the next connection tries again.
      attaching.catch(() => {
        if (this.volumes.get(volumeName) === attaching) this.volumes.delete(volumeName)
      })
    }
    return attaching
  }

  /** The volume if this host has it attached (not attaching), else undefined. */
  async ifAttached(volumeName: string): Promise<HostedVolume | undefined> {
    const attaching = this.volumes.get(volumeName)
    return attaching === undefined ? undefined : attaching.catch(() => undefined)
  }

  /** Names of the volumes attached or attaching. */
  attachedNames(): string[] {
    return [...this.volumes.keys()].sort()
  }

  /** Snapshots `volumeName` including every write acknowledged before the call. */
  async snapshot(volumeName: string, snapshotName: string): Promise<Snapshot> {
    await (await this.ifAttached(volumeName))?.checkpoint()
    return this.components.controlPlane.createSnapshot({ name: snapshotName, volume: volumeName })
  }

  /** Clones `source` (as of every acknowledged write) into a new volume `name` of the same store and policy. */
  async cloneVolume(source: string, name: string): Promise<Volume> {
    await (await this.ifAttached(source))?.checkpoint()
    const from = await this.components.controlPlane.getVolume(source)
    return this.components.controlPlane.createVolume({
      name,
      blockStore: from.blockStore,
      storagePolicy: from.storagePolicy,
      sizeBytes: from.sizeBytes,
      source: { volume: source },
    })
  }

  /** Grows the volume in the control plane, then the attached engine, so new connections see the size. */
  async resize(volumeName: string, sizeBytes: number): Promise<Volume> {
    const volume = await this.components.controlPlane.resizeVolume(volumeName, sizeBytes)
    await (await this.ifAttached(volumeName))?.resize(volume.sizeBytes)
    return volume
  }

  /**
   * Detaches the volume (final flush) and deletes it from the control plane. Clients
   * still connected get errors from then on; a new connection finds no volume.
   */
  async deleteVolume(volumeName: string): Promise<void> {
    const attaching = this.volumes.get(volumeName)
    if (attaching !== undefined) {
      this.volumes.delete(volumeName)
      const volume = await attaching.catch(() => undefined)
      if (volume !== undefined) {
        await volume.detach()
        this.metrics.attached.dec()
      }
    }
    await this.components.controlPlane.deleteVolume(volumeName)
  }

  private async attachOnce(volumeName: string): Promise<HostedVolume> {
    const stopTimer = this.metrics.attachSeconds.startTimer()
    try {
      const volume = await this.components.controlPlane.getVolume(volumeName)
      if (volume.blockStore !== this.init.blockStore) {
        throw new ForeignVolumeError(`volume ${volumeName} is in block store ${volume.blockStore}, not ${this.init.blockStore}`)
      }
      // A stop() that began meanwhile holds this promise and detaches the volume when it resolves.
      const hosted = await this.components.attachVolume(volumeName)
      this.metrics.attached.inc()
      this.components.logger.info({ volume: volumeName, attachMs: Math.round(stopTimer() * 1000) }, 'volume attached')
      return hosted
    } catch (err) {
      this.metrics.attachFailures.inc()
      throw err
    }
  }

  private async blockStoreVolumes(): Promise<Volume[]> {
    const out: Volume[] = []
    let token: string | undefined
    do {
      const page = await this.components.controlPlane.listVolumes({ limit: LIST_PAGE_SIZE, continue: token })
      out.push(...page.items.filter((v) => v.blockStore === this.init.blockStore))
      token = page.continue
    } while (token !== undefined)
    return out
  }
}
