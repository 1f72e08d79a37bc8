/**
 * The engine's view of a block store's cluster map: read from the control plane at
 * start, re-read on an interval, with the earlier maps kept (bounded) so readers can
 * find shards placed under an older epoch.
 */
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { CairnError } from '../../core/errors.js'
import type { ClusterMap, ControlPlane } from '../../control-plane/types.js'
import type { ClusterMapProvider } from '../chunks/chunk-store.js'

/** The block store has no storage nodes in its cluster map: nothing can be stored. */
export class EmptyClusterMapError extends CairnError {
  override readonly name = 'EmptyClusterMapError'
  readonly kind = 'unavailable'
}

export interface ControlPlaneMapsInit {
  blockStore: string
  /** How often the map is re-read. @default 2000 */
  refreshIntervalMs?: number
  /** Earlier maps kept for readers. @default 16 */
  historyMax?: number
}

export class ControlPlaneMaps implements ClusterMapProvider, Startable {
  private map: ClusterMap | undefined
  private readonly earlier: ClusterMap[] = []
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly init: ControlPlaneMapsInit,
    private readonly components: { controlPlane: ControlPlane; logger: Logger },
  ) {}

  /** @throws EmptyClusterMapError when no storage node was ever published. */
  async start(): Promise<void> {
    await this.refresh()
    if (this.map === undefined || this.map.members.length === 0) {
      throw new EmptyClusterMapError(`block store ${this.init.blockStore} has no storage nodes in its cluster map`)
    }
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.components.logger.warn({ err }, 'cluster map refresh failed; keeping the last one'))
    }, this.init.refreshIntervalMs ?? 2000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
  }

  current(): ClusterMap {
    if (this.map === undefined) throw new EmptyClusterMapError('cluster map not loaded yet')
    return this.map
  }

  history(): readonly ClusterMap[] {
    return this.earlier
  }

  private async refresh(): Promise<void> {
    const next = await this.components.controlPlane.getClusterMap(this.init.blockStore)
    const current = this.map
    if (current !== undefined && next.epoch <= current.epoch) return
    if (current !== undefined) {
      this.earlier.unshift(current)
      this.earlier.splice(this.init.historyMax ?? 16)
    }
    this.map = next
    this.components.logger.info({ epoch: next.epoch, members: next.members.length }, 'cluster map loaded')
  }
}
