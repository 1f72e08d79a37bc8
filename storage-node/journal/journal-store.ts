/**
 * The journal replicas of one storage node: one VolumeLog per volume incarnation
 * under `<dir>/<volumeUid>/`, loaded on first use and kept in memory up to a
 * bound; idle ones are closed to make room (their files stay on disk). Garbage
 * collection deletes the journals of volumes that no longer exist (`collect`).
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { ResourceExhaustedError, ShuttingDownError } from '../../core/errors.js'
import type { JournalMetrics } from '../metrics.js'
import { syncDirectory } from '../segment-file.js'
import { JournalCollectingError } from './errors.js'
import { journalDiskBytes, SEGMENT_NAME } from './journal-files.js'
import { isVolumeUid, type CollectRequest } from './validate.js'
import { VolumeLog } from './volume-log.js'

/** What one `collect` found and did. */
export interface CollectResult {
  scannedJournals: number
  /** Journals deleted (dry run: that would be deleted). */
  collectedJournals: number
  /** Bytes of every file in them. */
  freedBytes: number
  /** Not live, but changed at or after the cutoff: kept. */
  youngJournals: number
  /** Not live, but in use by a call or stream: kept. */
  busyJournals: number
}

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
  /** Volumes `collect` is deleting: nothing may load them meanwhile. */
  private readonly collecting = new Set<string>()
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
    this.refuseCollecting(volumeUid)
    let loading = this.volumes.get(volumeUid)
    if (loading === undefined) {
      await this.makeRoom()
      this.refuseCollecting(volumeUid)
      // Another call may have loaded it while this one made room: one VolumeLog per volume, always.
      loading = this.volumes.get(volumeUid)
      if (loading === undefined) {
        loading = VolumeLog.load(this.init.dir, volumeUid, { segmentSizeBytes: this.segmentSizeBytes }, this.components)
        this.volumes.set(volumeUid, loading)
        loading.catch(() => this.volumes.delete(volumeUid))
      }
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

  private refuseCollecting(volumeUid: string): void {
    if (this.collecting.has(volumeUid)) throw new JournalCollectingError(`the journal of volume ${volumeUid} is being collected: its volume no longer exists`)
  }

  /**
   * Deletes every journal whose uid is not in `request.liveVolumeUids` and whose files
   * (and directory) were last changed before `request.olderThanUnixMs`; one in use by a
   * call or stream is kept. A volume created after the caller listed the live uids has
   * only changes after the cutoff, so its journal is never taken.
   */
  async collect(request: CollectRequest): Promise<CollectResult> {
    if (!this.running) throw new ShuttingDownError('journal store is not running')
    const result: CollectResult = { scannedJournals: 0, collectedJournals: 0, freedBytes: 0, youngJournals: 0, busyJournals: 0 }
    const entries = await readdir(this.init.dir, { withFileTypes: true })
    for (const entry of entries) {
      if (!entry.isDirectory() || !isVolumeUid(entry.name)) continue
      result.scannedJournals += 1
      const uid = entry.name
      if (request.liveVolumeUids.has(uid) || this.collecting.has(uid)) continue
      this.collecting.add(uid)
      try {
        await this.collectOne(uid, request, result)
      } finally {
        this.collecting.delete(uid)
      }
    }
    if (result.collectedJournals > 0 && !request.dryRun) await syncDirectory(this.init.dir)
    return result
  }

  /** One candidate of `collect`, claimed in `collecting` so no call loads it meanwhile. */
  private async collectOne(uid: string, request: CollectRequest, result: CollectResult): Promise<void> {
    const loading = this.volumes.get(uid)
    // Calls that got it before the claim have taken their refs by now (they awaited the same load first).
    const log = loading === undefined ? undefined : await loading.catch(() => undefined)
    if (log !== undefined && log.refs > 0) {
      result.busyJournals += 1
      return
    }
    const dir = join(this.init.dir, uid)
    const files = await journalFiles(dir)
    if (files.lastChangeMs >= request.olderThanUnixMs) {
      result.youngJournals += 1
      return
    }
    result.collectedJournals += 1
    result.freedBytes += files.bytes
    if (request.dryRun) return
    if (log !== undefined) {
      this.volumes.delete(uid)
      await log.close()
    }
    await rm(dir, { recursive: true, force: true })
    this.components.metrics?.journalDiskBytes.dec(files.segmentBytes)
    this.components.logger.info({ volumeUid: uid, bytes: files.bytes, lastChange: new Date(files.lastChangeMs).toISOString() }, 'collected the journal of a volume that no longer exists')
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

/** The newest change time in a journal directory (its entries and itself) and the bytes of its files. */
async function journalFiles(dir: string): Promise<{ lastChangeMs: number; bytes: number; segmentBytes: number }> {
  let lastChangeMs = (await stat(dir)).mtimeMs
  let bytes = 0
  let segmentBytes = 0
  for (const name of await readdir(dir)) {
    const st = await stat(join(dir, name)).catch(() => undefined)
    if (st === undefined) continue
    lastChangeMs = Math.max(lastChangeMs, st.mtimeMs)
    bytes += st.size
    if (SEGMENT_NAME.test(name)) segmentBytes += st.size
  }
  return { lastChangeMs, bytes, segmentBytes }
}
