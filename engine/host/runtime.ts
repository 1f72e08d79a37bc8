/**
 * EngineRuntime: what one engine process shares between its volumes — the codec
 * worker pool, the cluster maps, one chunk store and manifest per storage policy —
 * and the VolumeAttacher that builds each volume's journal and engine from them.
 */
import type { Registry } from 'prom-client'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { CodecPool, type CodecPoolInit } from '../../core/workers/pool.js'
import { membersInStates } from '../../core/cluster-map.js'
import { rank } from '../../core/placement.js'
import type { ControlPlane, StoragePolicy } from '../../control-plane/types.js'
import { ErasureChunkStore, type ChunkStoreInit } from '../chunks/chunk-store.js'
import { MerkleManifest } from '../chunks/manifest.js'
import { ReplicatedJournal, type JournalMember } from '../journal/replicated-journal.js'
import { JournalClient } from '../../storage-node/journal/journal-client.js'
import { attachVolume, type JournalFactoryInit, type VolumeEngine, type VolumeEngineOptions } from '../volume/index.js'
import { attachReadOnly, ReadOnlyVolumeError, type ReadOnlyVolume } from '../volume/read-only-volume.js'
import { ControlPlaneMaps, EmptyClusterMapError } from './cluster-maps.js'
import type { HostedVolume, VolumeAttacher } from './types.js'

export interface EngineRuntimeInit {
  blockStore: string
  /** Recorded as the attachment of every volume this engine serves. */
  nodeId: string
  codec?: CodecPoolInit
  /** Per-policy chunk store tunables (cache size, in-flight bytes). @default the store's defaults */
  chunkStore?: Omit<ChunkStoreInit, 'policy'>
  volume?: VolumeEngineOptions
  /** @default 2000 */
  mapRefreshIntervalMs?: number
  /** Sent as `authorization: Bearer …` to storage nodes (shards and journals); required by nodes that listen beyond loopback. @default none */
  clusterToken?: string
}

export interface EngineRuntimeComponents {
  controlPlane: ControlPlane
  logger: Logger
  registry: Registry
}

interface PolicyStores {
  chunks: ErasureChunkStore
  manifest: MerkleManifest
}

export class EngineRuntime implements Startable {
  readonly maps: ControlPlaneMaps
  private readonly codec: CodecPool
  private readonly stores = new Map<string, Promise<PolicyStores>>()

  constructor(
    private readonly init: EngineRuntimeInit,
    private readonly components: EngineRuntimeComponents,
  ) {
    this.codec = new CodecPool(init.codec ?? {}, { logger: components.logger.child({ component: 'codec' }) })
    this.maps = new ControlPlaneMaps(
      { blockStore: init.blockStore, refreshIntervalMs: init.mapRefreshIntervalMs },
      { controlPlane: components.controlPlane, logger: components.logger },
    )
  }

  async start(): Promise<void> {
    await this.maps.start()
    await this.codec.start()
  }

  /** Call after every volume is detached: their final flushes need the stores. */
  async stop(): Promise<void> {
    const stores = await Promise.all([...this.stores.values()].map((p) => p.catch(() => undefined)))
    this.stores.clear()
    for (const s of stores) await s?.chunks.stop()
    await this.codec.stop()
    await this.maps.stop()
  }

  /** The attacher the EngineHost uses. */
  readonly attachVolume: VolumeAttacher = async (volumeName) => hosted(await this.attachWriter(volumeName))

  private async attachWriter(volumeName: string): Promise<VolumeEngine> {
    const volume = await this.components.controlPlane.getVolume(volumeName)
    const stores = await this.storesFor(volume.storagePolicy)
    return attachVolume(
      { volumeName, nodeId: this.init.nodeId, options: this.init.volume },
      {
        controlPlane: this.components.controlPlane,
        chunkStore: stores.chunks,
        manifest: stores.manifest,
        journalFactory: (init) => this.journalFor(init),
        logger: this.components.logger,
        registry: this.components.registry,
      },
    )
  }

  /**
   * The attacher of a read-only engine (`cairn engine --read-only`): serves the volume's
   * head, takes no epoch and so fences nobody (a head left lagging by a writer that went
   * away is first recovered, which does); refused while a writer holds the volume.
   */
  readonly attachReadOnly: VolumeAttacher = async (volumeName) => {
    const volume = await this.components.controlPlane.getVolume(volumeName)
    const stores = await this.storesFor(volume.storagePolicy)
    const ro = await attachReadOnly(
      { volumeName, lookupCacheEntries: this.init.volume?.lookupCacheEntries },
      {
        controlPlane: this.components.controlPlane,
        chunkStore: stores.chunks,
        manifest: stores.manifest,
        logger: this.components.logger,
        // A head left lagging by a writer that went away: replay its journal here, then detach cleanly.
        recover: async (name) => {
          const writer = await this.attachWriter(name)
          await writer.stop()
        },
      },
    )
    return hostedReadOnly(ro)
  }

  private storesFor(policyName: string): Promise<PolicyStores> {
    let stores = this.stores.get(policyName)
    if (stores === undefined) {
      stores = this.createStores(policyName)
      this.stores.set(policyName, stores)
      stores.catch(() => this.stores.delete(policyName))
    }
    return stores
  }

  private async createStores(policyName: string): Promise<PolicyStores> {
    const policy: StoragePolicy = await this.components.controlPlane.getStoragePolicy(policyName)
    const chunks = new ErasureChunkStore(
      {
        ...this.init.chunkStore,
        clients: { ...this.init.chunkStore?.clients, token: this.init.clusterToken ?? this.init.chunkStore?.clients?.token },
        policy: { dataShards: policy.dataShards, parityShards: policy.parityShards, hash: policy.hash, chunkSizeBytes: policy.chunkSizeBytes },
      },
      { maps: this.maps, codec: this.codec, registry: this.components.registry, logger: this.components.logger.child({ component: 'chunks', policy: policyName }) },
    )
    await chunks.start()
    return { chunks, manifest: new MerkleManifest({ hash: policy.hash }, { chunks }) }
  }

  /** The journal of one volume incarnation: on its recorded replicas, else the first of its HRW ranking. */
  private journalFor(init: JournalFactoryInit): ReplicatedJournal {
    const map = this.maps.current()
    const byId = new Map(map.members.map((m) => [m.id, m]))
    const uid = new TextEncoder().encode(init.volumeUid)
    const recorded = init.replicas.map((id) => byId.get(id)).filter((m) => m !== undefined)
    const chosen = recorded.length > 0 ? recorded : rank(uid, map, { exclude: membersInStates(map, ['down', 'draining']) }).slice(0, init.policy.journalReplicas)
    if (chosen.length === 0) throw new EmptyClusterMapError(`no storage node can hold the journal of ${init.volumeName}`)
    const member = (m: { id: string; address: string }): JournalMember => ({ id: m.id, address: m.address })
    return new ReplicatedJournal(
      { volumeUid: init.volumeUid, epoch: init.epoch, replicas: chosen.map(member) },
      {
        pickReplacement: (excludedIds) => {
          const now = this.maps.current()
          const exclude = new Set([...excludedIds, ...membersInStates(now, ['down', 'draining'])])
          const next = rank(uid, now, { exclude })[0]
          return next === undefined ? undefined : member(next)
        },
        onReplicasChanged: (ids) => this.recordReplicas(init.volumeName, init.epoch, ids),
        connect: (m) => new JournalClient({ address: m.address, token: this.init.clusterToken }),
        logger: this.components.logger.child({ volume: init.volumeName, component: 'journal' }),
      },
    )
  }

  private async recordReplicas(volumeName: string, epoch: number, ids: readonly string[]): Promise<void> {
    const { controlPlane, logger } = this.components
    const volume = await controlPlane.getVolume(volumeName)
    if (volume.status.epoch !== epoch) return
    try {
      await controlPlane.updateVolumeStatus(volumeName, volume.revision, { journalReplicas: [...ids] })
      logger.info({ volume: volumeName, replicas: ids }, 'journal replicas changed')
    } catch (err) {
      // Not fatal: this engine keeps serving; the next attach starts from the recorded set and replaces unreachable members again.
      logger.warn({ volume: volumeName, err }, 'recording new journal replicas failed')
    }
  }
}

/** The host's view of a read-only volume: nothing to checkpoint (it writes nothing), no growing, nothing to release. */
function hostedReadOnly(volume: ReadOnlyVolume): HostedVolume {
  return {
    name: volume.volumeName,
    backend: volume,
    checkpoint: async () => undefined,
    resize: async () => {
      throw new ReadOnlyVolumeError(`volume ${volume.volumeName} is served read-only here; grow it where it is attached for writing`)
    },
    status: () => volume.status(),
    detach: () => volume.close(),
  }
}

/** The host's view of an attached engine. */
function hosted(engine: VolumeEngine): HostedVolume {
  return {
    name: engine.volumeName,
    backend: engine,
    checkpoint: () => engine.flushDirty(),
    resize: (sizeBytes) => engine.resize(sizeBytes),
    status: () => ({ state: engine.engineState, epoch: engine.epoch, sizeBytes: engine.sizeBytes, dirtyBytes: engine.dirtyBytes }),
    detach: () => engine.stop(),
  }
}
