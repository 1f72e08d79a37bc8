/**
 * Where a storage node's cluster maps come from when it runs the durability
 * services: its block store's map in the control plane, re-read on an interval.
 *
 * Not `ControlPlaneMaps` (engine/host) for two reasons, both about a storage node
 * being the first thing to run: its start fails on an empty map, while a node must
 * start before any map lists it (its peer id is published once it runs); and it needs
 * a whole `ControlPlane`, whose Kubernetes start() lists all four CRDs, while a
 * storage node's ServiceAccount may only read BlockStores. So the source here is one
 * narrow read, and an absent or empty map is an empty map until the real one appears.
 */
import { access } from 'node:fs/promises'
import type { ClusterMap, ClusterMapProvider } from '../../core/cluster-map.js'
import type { StorageNodeDurabilityConfig } from '../../core/config.js'
import { CairnError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'

/** The one read a storage node needs from the control plane. */
export interface ClusterMapSource extends Startable {
  /** The block store's current map; NotFoundError (or any error) is retried by the caller. */
  getClusterMap(blockStore: string): Promise<ClusterMap>
}

/** `--control-plane local` names a file that does not exist (opening it would create an empty control plane). */
export class NoControlPlaneFileError extends CairnError {
  override readonly name = 'NoControlPlaneFileError'
  readonly kind = 'not-found'
}

/**
 * The source the flags name, loaded lazily so a plain node never pays for it.
 * @throws NoControlPlaneFileError when the Local control plane file is missing
 */
export async function openMapSource(durability: StorageNodeDurabilityConfig, logger: Logger): Promise<ClusterMapSource> {
  const target = durability.controlPlane
  if (target.kind === 'local') {
    await access(target.path).catch((err: unknown) => {
      throw new NoControlPlaneFileError(`no control plane at ${target.path} (--control-plane-path)`, { cause: err })
    })
    const { LocalControlPlane } = await import('../../control-plane/local/local-control-plane.js')
    return new LocalControlPlane({ path: target.path }, { logger })
  }
  const { loadKubeConfig } = await import('../../control-plane/kubernetes/kubernetes-control-plane.js')
  const { CustomObjectsApi } = await import('@kubernetes/client-node')
  const { CairnObjects } = await import('../../control-plane/kubernetes/objects.js')
  const { clusterMapFromCr } = await import('../../control-plane/kubernetes/convert.js')
  const { NotFoundError } = await import('../../control-plane/types.js')
  const kubeConfig = loadKubeConfig(target.kubeconfig === undefined ? { inCluster: true } : { path: target.kubeconfig })
  const objects = new CairnObjects(kubeConfig.makeApiClient(CustomObjectsApi), 30_000)
  return {
    start: async () => undefined,
    stop: async () => undefined,
    async getClusterMap(blockStore: string): Promise<ClusterMap> {
      const cr = await objects.get('BlockStore', blockStore)
      if (cr === undefined) throw new NotFoundError('BlockStore', blockStore)
      return clusterMapFromCr(cr)
    },
  }
}

export async function openClusterMaps(durability: StorageNodeDurabilityConfig, logger: Logger): Promise<PatientClusterMaps> {
  const source = await openMapSource(durability, logger.child({ component: 'control-plane' }))
  return new PatientClusterMaps({ blockStore: durability.blockStore, refreshIntervalMs: durability.clusterMapRefreshIntervalMs }, { source, logger: logger.child({ component: 'cluster-maps' }) })
}

export interface PatientClusterMapsInit {
  blockStore: string
  /** How often the map is re-read (and the source's start retried). @default 2000 */
  refreshIntervalMs?: number
  /** Earlier maps kept for history(). @default 16 */
  historyMax?: number
}

const EMPTY_MAP: ClusterMap = { epoch: 0, members: [] }

/**
 * The cluster maps of a storage node: never blocks start on the control plane. Until a
 * map is read it answers an empty one (epoch 0: the mesh accepts no peer, repair has
 * nothing to place); then it follows newer epochs only, keeping earlier maps (bounded).
 * A failed read keeps the last map and is retried on the next tick.
 */
export class PatientClusterMaps implements ClusterMapProvider, Startable {
  private map: ClusterMap = EMPTY_MAP
  private readonly earlier: ClusterMap[] = []
  private sourceStarted = false
  private timer: NodeJS.Timeout | undefined
  private refreshing: Promise<void> = Promise.resolve()
  private stopped = true
  private lastFailure: string | undefined

  constructor(
    private readonly init: PatientClusterMapsInit,
    private readonly components: { source: ClusterMapSource; logger: Logger },
  ) {}

  /** One read now (its failure is logged, not thrown), then a read per interval. */
  async start(): Promise<void> {
    this.stopped = false
    this.refreshing = this.refresh()
    await this.refreshing
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.refreshing
    if (this.sourceStarted) await this.components.source.stop()
    this.sourceStarted = false
  }

  current(): ClusterMap {
    return this.map
  }

  history(): readonly ClusterMap[] {
    return this.earlier
  }

  /** Reads the map; a newer epoch replaces the current one. Never throws. */
  async refresh(): Promise<void> {
    try {
      // Started here, not in start(): an API server that is briefly unreachable must not kill the node.
      if (!this.sourceStarted) {
        await this.components.source.start()
        this.sourceStarted = true
      }
      const next = await this.components.source.getClusterMap(this.init.blockStore)
      this.lastFailure = undefined
      if (next.epoch <= this.map.epoch) return
      if (this.map !== EMPTY_MAP) {
        this.earlier.unshift(this.map)
        this.earlier.splice(this.init.historyMax ?? 16)
      }
      this.map = next
      this.components.logger.info({ epoch: next.epoch, members: next.members.length }, 'cluster map loaded')
    } catch (err) {
      // Logged once per distinct failure: a node waiting for its block store must not flood the log.
      const reason = `${(err as Error).name}: ${(err as Error).message}`
      if (reason !== this.lastFailure) this.components.logger.warn({ blockStore: this.init.blockStore, err }, 'cannot read the cluster map; keeping the last one and retrying')
      this.lastFailure = reason
    }
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.refreshing = this.refresh().finally(() => this.schedule())
    }, this.init.refreshIntervalMs ?? 2000)
    this.timer.unref()
  }
}
