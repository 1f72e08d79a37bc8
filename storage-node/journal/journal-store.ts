/**
 * The journal replicas of one storage node: one VolumeLog per volume incarnation
 * under `<dir>/<volumeUid>/`, loaded on first use and kept in memory up to a
 * bound; idle ones are closed to make room (their files stay on disk).
 */
import { mkdir } from 'node:fs/promises'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { ResourceExhaustedError, ShuttingDownError } from '../../core/errors.js'
import type { JournalMetrics } from '../metrics.js'
import { journalDiskBytes } from './journal-files.js'
import { VolumeLog } from './volume-log.js'

export interface JournalStoreInit {
  /** Directory holding one subdirectory per volume; created if missing. */
  dir: string
  /** A segment file is closed and a new one started past this size. @default 67108864 (64 MiB) */
  segmentSizeBytes?: number
  /** Volumes held open at once; an idle one is closed to make room, else RESOURCE_EXHAUSTED. @default 1024 */
  maxOpenVolumes?: number
}

export interface JournalStoreComponents {
  logger: Logger
  metrics?: JournalMetrics
}

export class JournalStore implements Startable {
  private readonly volumes = new Map<string, Promise<VolumeLog>>()
  private readonly segmentSizeBytes: number
  private readonly maxOpenVolumes: number
  private running = false

  constructor(
    private readonly init: JournalStoreInit,
    private readonly components: JournalStoreComponents,
  ) {
    this.segmentSizeBytes = init.segmentSizeBytes ?? 64 * 1024 * 1024
    this.maxOpenVolumes = init.maxOpenVolumes ?? 1024
  }

  async start(): Promise<void> {
    await mkdir(this.init.dir, { recursive: true })
    this.components.metrics?.journalDiskBytes.set(await journalDiskBytes(this.init.dir))
    this.running = true
  }

  /** Closes every volume after the work already queued on it. */
  async stop(): Promise<void> {
    this.running = false
    const logs = await Promise.allSettled(this.volumes.values())
    this.volumes.clear()
    for (const log of logs) if (log.status === 'fulfilled') await log.value.close()
  }

  /**
   * Runs `work` with the volume loaded and pinned (not evicted while it runs).
   * Long-lived streams pin it for their whole life through `acquire`.
   */
  async withVolume<T>(volumeUid: string, work: (log: VolumeLog) => Promise<T>): Promise<T> {
    const log = await this.acquire(volumeUid)
    try {
      return await work(log)
    } finally {
      this.release(log)
    }
  }

  /** Loads and pins a volume; pair with `release`. */
  async acquire(volumeUid: string): Promise<VolumeLog> {
    if (!this.running) throw new ShuttingDownError('journal store is not running')
    let loading = this.volumes.get(volumeUid)
    if (loading === undefined) {
      await this.makeRoom()
      loading = VolumeLog.load(this.init.dir, volumeUid, { segmentSizeBytes: this.segmentSizeBytes }, this.components)
      this.volumes.set(volumeUid, loading)
      loading.catch(() => this.volumes.delete(volumeUid))
    }
    const log = await loading
    log.refs += 1
    log.lastUsedMs = Date.now()
    return log
  }

  release(log: VolumeLog): void {
    log.refs -= 1
    log.lastUsedMs = Date.now()
  }

  /** Closes the least recently used idle volume when the bound is reached. */
  private async makeRoom(): Promise<void> {
    if (this.volumes.size < this.maxOpenVolumes) return
    let victim: VolumeLog | undefined
    for (const loading of this.volumes.values()) {
      const log = await loading.catch(() => undefined)
      if (log === undefined || log.refs > 0) continue
      if (victim === undefined || log.lastUsedMs < victim.lastUsedMs) victim = log
    }
    if (victim === undefined) throw new ResourceExhaustedError(`${this.volumes.size} journals open and busy; limit ${this.maxOpenVolumes}`)
    this.volumes.delete(victim.volumeUid)
    await victim.close()
  }
}
