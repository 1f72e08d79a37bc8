/**
 * Marks `cairn dev`'s storage nodes `down` in the cluster map when they have been dead
 * or unhealthy for `downTimeoutMs`, and `active` again once they are healthy: the dev
 * stand-in for what the operator does from pod readiness. A down member's shards are
 * then rebuilt elsewhere by the other nodes' repairers; a short outage (a restart, a
 * crash the supervisor recovers from) changes nothing, so it moves no data.
 */
import type { Logger } from '../../../core/logger.js'
import type { Startable } from '../../../core/startable.js'
import type { ClusterMap, ClusterMember, ControlPlane } from '../../../control-plane/types.js'
import { DEV_BLOCK_STORE, updateMembers } from './bootstrap.js'

export interface MemberHealthInit {
  /** A member unhealthy this long is marked down. */
  downTimeoutMs: number
  /** Pause between probes. @default min(1000, downTimeoutMs / 4), at least 50 */
  probeIntervalMs?: number
}

export interface MemberHealthComponents {
  cp: ControlPlane
  /** Whether the member with this id serves now (its process is up and ready). */
  probe: (memberId: string) => Promise<boolean>
  logger: Logger
  /** Sees every map read, before the probes (the dev stops nodes that left it). @default none */
  onMap?: (map: ClusterMap) => Promise<void>
  /** @default Date.now */
  clock?: () => number
}

export class MemberHealthMonitor implements Startable {
  /** When each member was last seen healthy (or when watching it began). */
  private readonly healthySinceMs = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> = Promise.resolve()
  private stopped = true

  constructor(
    private readonly init: MemberHealthInit,
    private readonly components: MemberHealthComponents,
  ) {}

  async start(): Promise<void> {
    this.stopped = false
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }

  /** One probe of every member and at most one map update; what the timer runs (tests call it directly). */
  async tick(): Promise<void> {
    const now = (this.components.clock ?? Date.now)()
    const map = await this.components.cp.getClusterMap(DEV_BLOCK_STORE)
    await this.components.onMap?.(map)
    const healthy = new Map<string, boolean>()
    await Promise.all(map.members.map(async (m) => healthy.set(m.id, await this.components.probe(m.id).catch(() => false))))
    for (const m of map.members) {
      if (healthy.get(m.id) === true || !this.healthySinceMs.has(m.id)) this.healthySinceMs.set(m.id, now)
    }
    for (const id of this.healthySinceMs.keys()) if (!healthy.has(id)) this.healthySinceMs.delete(id)
    const desired = (m: ClusterMember): ClusterMember['state'] => {
      if (healthy.get(m.id) === true) return m.state === 'down' ? 'active' : m.state
      const silentMs = now - (this.healthySinceMs.get(m.id) ?? now)
      return silentMs >= this.init.downTimeoutMs && m.state === 'active' ? 'down' : m.state
    }
    if (map.members.every((m) => desired(m) === m.state)) return
    await updateMembers(
      this.components.cp,
      (members) => members.map((m) => {
        const state = desired(m)
        if (state !== m.state) this.components.logger.warn({ member: m.id, from: m.state, to: state, downTimeoutMs: this.init.downTimeoutMs }, 'member state changed')
        return state === m.state ? m : { ...m, state }
      }),
      this.components.logger,
    )
  }

  private schedule(): void {
    if (this.stopped) return
    const intervalMs = this.init.probeIntervalMs ?? Math.max(50, Math.min(1000, Math.floor(this.init.downTimeoutMs / 4)))
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((err: unknown) => this.components.logger.warn({ err }, 'member health check failed; retrying'))
        .finally(() => this.schedule())
    }, intervalMs)
  }
}
