/**
 * Garbage collection on a schedule in `cairn dev`: every `--gc-interval` one
 * collection of the dev block store with `--gc-grace`, never two at once. A failed
 * run is logged and retried at the next interval; it never stops dev.
 */
import type { Registry } from 'prom-client'
import type { Logger } from '../../../core/logger.js'
import type { Startable } from '../../../core/startable.js'
import { parseDurationMs } from '../../../core/config.js'
import type { ControlPlane } from '../../../control-plane/types.js'
import { GarbageCollector, type GcReport } from '../../../engine/gc/index.js'
import { DEV_BLOCK_STORE } from './bootstrap.js'

export interface DevGcScheduleInit {
  /** Between the end of one run and the start of the next. */
  intervalMs: number
  gracePeriodMs: number
  /** @default 'local' */
  blockStore?: string
}

export class DevGcSchedule implements Startable {
  readonly #gc: GarbageCollector
  readonly #abort = new AbortController()
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  /** The last run's report, for the status page. */
  lastReport: GcReport | undefined

  constructor(
    private readonly init: DevGcScheduleInit,
    private readonly components: { controlPlane: ControlPlane; logger: Logger; registry?: Registry },
  ) {
    this.#gc = new GarbageCollector({}, { controlPlane: components.controlPlane, logger: components.logger, ...(components.registry === undefined ? {} : { registry: components.registry }) })
  }

  async start(): Promise<void> {
    await this.#gc.start()
    this.#schedule()
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#abort.abort()
    await this.#running
    await this.#gc.stop()
  }

  #schedule(): void {
    if (this.#abort.signal.aborted) return
    this.#timer = setTimeout(() => {
      this.#running = this.#runOnce().finally(() => {
        this.#running = undefined
        this.#schedule()
      })
    }, this.init.intervalMs)
    this.#timer.unref()
  }

  async #runOnce(): Promise<void> {
    const blockStore = this.init.blockStore ?? DEV_BLOCK_STORE
    try {
      this.lastReport = await this.#gc.run(blockStore, { gracePeriodMs: this.init.gracePeriodMs, signal: this.#abort.signal })
      const { sweptShards, freedBytes, markedChunks, collectedJournals, durationMs } = this.lastReport
      this.components.logger.info({ blockStore, sweptShards, freedBytes, markedChunks, collectedJournals, durationMs }, 'garbage collection done')
    } catch (err) {
      if (this.#abort.signal.aborted) return
      this.components.logger.warn({ blockStore, err }, 'garbage collection failed; retrying at the next interval')
    }
  }
}

/** Starts the schedule `cairn dev`'s flags ask for. */
export async function startDevGcSchedule(cp: ControlPlane, config: { gcInterval: string; gcGrace: string }, logger: Logger, registry?: Registry): Promise<DevGcSchedule> {
  const schedule = new DevGcSchedule(
    { intervalMs: parseDurationMs(config.gcInterval), gracePeriodMs: parseDurationMs(config.gcGrace) },
    { controlPlane: cp, logger: logger.child({ component: 'gc' }), ...(registry === undefined ? {} : { registry }) },
  )
  await schedule.start()
  return schedule
}
