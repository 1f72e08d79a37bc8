/**
 * The storage-node daemon: the shard store, the ShardService gRPC server, and the
 * health/metrics server, wired and started in order and stopped in reverse.
 * Every gRPC call passes the cluster-token check (storage-node/auth.ts) and every
 * put the capacity allocation (storage-node/capacity.ts).
 *
 * With a durability section (and a cluster-map provider) the node also runs the
 * libp2p storage mesh, the scrubber and the repairer: started after the store,
 * stopped before it, reported in Stats.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../core/logger.js'
import { startInOrder, type Startable } from '../core/startable.js'
import type { StorageNodeConfig } from '../core/config.js'
import { join } from 'node:path'
import { HealthServer } from '../core/health-server.js'
import { assert, ConfigError } from '../core/errors.js'
import { createStorageNodeMetrics } from './metrics.js'
import { loadShardService } from './proto.js'
import { createShardService, defaultShardServiceLimits, type ShardServiceHandle, type ShardServiceLimits } from './shard-service.js'
import { createSegmentShardStore, type SegmentShardStore } from './segment-store.js'
import type { NodeStats, StoreStats } from './shard-store.js'
import { JournalStore } from './journal/journal-store.js'
import { createJournalService, defaultJournalServiceLimits, type JournalServiceHandle } from './journal/journal-service.js'
import { loadJournalService } from './journal/proto.js'
import { assertTokenOrLoopback, clusterTokenInterceptor, loadClusterToken, tokenVerifier, type TokenVerifier } from './auth.js'
import { allocationBytes, CapacityGuard, freeBytes, registerCapacityMetrics } from './capacity.js'
import { placementMaps, type ClusterMapProvider } from '../core/cluster-map.js'
import { StorageMesh, type PeerLiveness } from './mesh/index.js'
import { Scrubber } from './scrub/index.js'
import { Repairer } from './repair/index.js'

export type StorageNodeInit = Pick<
  StorageNodeConfig,
  | 'dataDir'
  | 'listen'
  | 'metricsListen'
  | 'segmentSizeBytes'
  | 'compactionLiveRatio'
  | 'compactionIntervalMs'
  | 'maxBatchShards'
  | 'maxBatchBytes'
  | 'maxShardBytes'
  | 'maxInFlightRequests'
  | 'pendingMaxBytes'
  | 'shutdownGraceMs'
> &
  Partial<Pick<StorageNodeConfig, 'journalSegmentSizeBytes' | 'journalMaxRecordBytes' | 'journalMaxInFlightBytesPerStream' | 'journalMaxOpenVolumes'>> &
  Partial<Pick<StorageNodeConfig, 'capacityFraction' | 'capacityMinBytes' | 'capacityMaxBytes' | 'clusterToken' | 'clusterTokenFile'>> & {
    /** Mesh, scrub and repair; without it the node is a plain shard server. @default none */
    durability?: StorageNodeDurabilityInit
  }

/** The durability services of one node (issue 6): who it is in the cluster map and how hard it may work. */
export interface StorageNodeDurabilityInit {
  /** This node's id in the cluster map. */
  memberId: string
  /** libp2p TCP listen address, `host:port` (port 0: any). */
  meshListen: string
  /** @default 2000 */
  heartbeatIntervalMs?: number
  /** Local shard bytes re-read and verified per second. */
  scrubBytesPerSecond: number
  /** Pause between scrub passes. */
  scrubIntervalMs: number
  /** Repair and rebalance cap for the whole cluster; each node takes its share. */
  repairBandwidthBytesPerSecond: number
  /** Pause between repair passes. */
  repairIntervalMs: number
  /** Copies younger than this are not moved or rebuilt yet. @default 60000 (the Repairer's) */
  repairSettleMs?: number
}

export interface StorageNodeComponents {
  logger: Logger
  registry: Registry
  /** The cluster maps (needed with `init.durability`). @default none */
  maps?: ClusterMapProvider
}

/** The running durability services. */
interface Durability {
  mesh: StorageMesh
  scrubber: Scrubber
  repairer: Repairer
}

export class StorageNode implements Startable {
  readonly store: SegmentShardStore
  /** The store as the ShardService sees it: puts past the allocation are refused. */
  readonly capacity: CapacityGuard
  /** Set at start when a cluster token is configured; undefined means loopback dev mode. */
  private verifier: TokenVerifier | undefined
  private readonly grpc: Server
  private readonly health: HealthServer
  private grpcPort: number | undefined
  private serving = false
  private readonly limits: ShardServiceLimits
  private readonly service: ShardServiceHandle
  readonly journalStore: JournalStore
  private readonly journalService: JournalServiceHandle
  private readonly durability: Durability | undefined

  constructor(
    private readonly init: StorageNodeInit,
    private readonly components: StorageNodeComponents,
  ) {
    const metrics = createStorageNodeMetrics(components.registry)
    this.store = createSegmentShardStore(
      {
        dataDir: init.dataDir,
        segmentSizeBytes: init.segmentSizeBytes,
        compactionLiveRatio: init.compactionLiveRatio,
        compactionIntervalMs: init.compactionIntervalMs,
        pendingMaxBytes: init.pendingMaxBytes,
      },
      { logger: components.logger.child({ component: 'shard-store' }), metrics },
    )
    this.limits = {
      ...defaultShardServiceLimits,
      maxBatchShards: init.maxBatchShards,
      maxBatchBytes: init.maxBatchBytes,
      maxShardBytes: init.maxShardBytes,
      maxInFlightRequests: init.maxInFlightRequests,
    }
    // The transport limit sits above the batch limit so that an oversize batch reaches
    // our validation and gets a precise error instead of a bare transport one.
    const journalMaxRecordBytes = init.journalMaxRecordBytes ?? defaultJournalServiceLimits.maxRecordBytes
    const maxMessageBytes = Math.max(init.maxBatchBytes, journalMaxRecordBytes) + 1024 * 1024
    const unauthenticated = new Counter({ name: 'cairn_storage_node_unauthenticated_requests_total', help: 'gRPC calls refused for a missing or wrong cluster token.', registers: [components.registry] })
    this.capacity = new CapacityGuard({ store: this.store, usedBytes: () => this.store.counts.bytes })
    registerCapacityMetrics(components.registry, this.capacity)
    this.grpc = new Server({
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
      // Installed now, armed at start once the token is read.
      interceptors: [clusterTokenInterceptor(() => this.verifier, components.logger.child({ component: 'auth' }), () => unauthenticated.inc())],
    })
    this.durability = this.createDurability()
    this.service = createShardService(this.limits, { store: this.capacity, logger: components.logger, metrics, nodeStats: () => this.nodeStats() })
    this.grpc.addService(loadShardService().service, this.service.handlers)
    this.journalStore = new JournalStore(
      { dir: join(init.dataDir, 'journal'), segmentSizeBytes: init.journalSegmentSizeBytes, maxOpenVolumes: init.journalMaxOpenVolumes },
      { logger: components.logger.child({ component: 'journal' }), metrics },
    )
    this.journalService = createJournalService(
      {
        ...defaultJournalServiceLimits,
        maxRecordBytes: journalMaxRecordBytes,
        maxInFlightBytesPerStream: init.journalMaxInFlightBytesPerStream ?? defaultJournalServiceLimits.maxInFlightBytesPerStream,
      },
      { store: this.journalStore, logger: components.logger.child({ component: 'journal' }), metrics },
    )
    this.grpc.addService(loadJournalService().service, this.journalService.handlers)
    this.health = new HealthServer(
      { listen: init.metricsListen, readiness: () => (this.serving ? undefined : 'starting or stopping') },
      { logger: components.logger, registry: components.registry },
    )
  }

  private createDurability(): Durability | undefined {
    const init = this.init.durability
    if (init === undefined) return undefined
    const maps = this.components.maps
    if (maps === undefined) throw new ConfigError('the durability services need a cluster-map provider')
    const { logger, registry } = this.components
    const memberId = init.memberId
    const mesh = new StorageMesh(
      { dataDir: this.init.dataDir, listen: init.meshListen, ...(init.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: init.heartbeatIntervalMs }) },
      // The capacity guard, not the raw store: shards pushed by peers count against this node's allocation.
      { memberId, maps, store: this.capacity, logger: logger.child({ component: 'mesh' }), registry },
    )
    const scrubber = new Scrubber(
      { bytesPerSecond: init.scrubBytesPerSecond, intervalMs: init.scrubIntervalMs },
      { store: this.store, logger: logger.child({ component: 'scrub', member: memberId }), registry },
    )
    const repairer = new Repairer(
      { bandwidthBytesPerSecond: init.repairBandwidthBytesPerSecond, intervalMs: init.repairIntervalMs, stateDir: join(this.init.dataDir, 'repair'), ...(init.repairSettleMs === undefined ? {} : { settleMs: init.repairSettleMs }) },
      { memberId, maps: placementMaps(maps), store: this.capacity, peers: mesh, liveness: mesh, logger: logger.child({ component: 'repair', member: memberId }), registry },
    )
    return { mesh, scrubber, repairer }
  }

  /** Stats beyond the store: empty for a plain shard server. */
  private nodeStats(): Omit<NodeStats, keyof StoreStats> {
    const d = this.durability
    if (d === undefined || !this.serving) return {}
    return { peerId: d.mesh.peerId(), scrub: d.scrubber.stats(), repair: d.repairer.stats() }
  }

  /** Computes the allocation from the filesystem's free space plus the segment bytes already stored (a restart must not shrink it). */
  private async allocate(): Promise<void> {
    const stats = await this.store.stats()
    const availableBytes = (await freeBytes(this.init.dataDir)) + stats.segmentBytes
    const rule = { fraction: this.init.capacityFraction ?? 0.8, minBytes: this.init.capacityMinBytes, maxBytes: this.init.capacityMaxBytes }
    const capacityBytes = allocationBytes(rule, availableBytes)
    this.capacity.setCapacityBytes(capacityBytes)
    this.components.logger.info({ capacityBytes, availableBytes, usedBytes: this.capacity.usedBytes(), ...rule }, 'capacity allocated')
  }

  /**
   * Starts every part in order (core/startable.ts `startInOrder`): if one fails, the parts
   * already started are stopped again before the error is thrown, so a node that cannot
   * start leaves nothing running, no health server answering 200 for a node serving nothing.
   */
  async start(): Promise<void> {
    // Checked before anything opens: a node that would serve the network unauthenticated must not start at all.
    const token = await loadClusterToken(this.init)
    assertTokenOrLoopback(this.init.listen, token)
    if (token !== undefined) this.verifier = tokenVerifier(token)
    const nothing = async (): Promise<void> => undefined
    const grpcServer: Startable = {
      start: async () => {
        this.grpcPort = await new Promise<number>((resolve, reject) => {
          // Plaintext with a cluster token between pods (ADR 0015); mTLS is a later step.
          this.grpc.bindAsync(this.init.listen, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)))
        })
      },
      // Only reached when a later part failed: stop() drains a serving node gracefully instead.
      stop: async () => {
        this.grpcPort = undefined
        this.grpc.forceShutdown()
      },
    }
    const d = this.durability
    await startInOrder(
      [
        { name: 'health server', part: this.health },
        { name: 'shard store', part: this.store },
        { name: 'capacity allocation', part: { start: () => this.allocate(), stop: nothing } },
        { name: 'journal store', part: this.journalStore },
        ...(d === undefined ? [] : [{ name: 'storage mesh', part: d.mesh }]),
        { name: 'gRPC server', part: grpcServer },
        // Scrub and repair read and write the store in the background: only once the node serves.
        ...(d === undefined ? [] : [{ name: 'scrubber', part: d.scrubber }, { name: 'repairer', part: d.repairer }]),
      ],
      this.components.logger,
    )
    this.serving = true
    const mesh = d === undefined ? {} : { peerId: d.mesh.peerId(), meshAddress: d.mesh.listenAddress() }
    this.components.logger.info({ grpcAddress: this.grpcAddress(), metricsAddress: this.health.address(), authenticated: token !== undefined, ...mesh }, 'storage node serving')
  }

  /** Drains in-flight requests (bounded by shutdownGraceMs), then commits and closes the store. */
  async stop(): Promise<void> {
    this.serving = false
    await this.durability?.repairer.stop()
    await this.durability?.scrubber.stop()
    if (this.grpcPort !== undefined) {
      this.grpcPort = undefined
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          this.components.logger.warn('shutdown grace elapsed; cancelling in-flight requests')
          this.grpc.forceShutdown()
          resolve()
        }, this.init.shutdownGraceMs)
        this.grpc.tryShutdown(() => {
          clearTimeout(force)
          resolve()
        })
        this.service.drain()
        this.journalService.drain()
      })
    }
    await this.durability?.mesh.stop()
    await this.journalStore.stop()
    await this.store.stop()
    await this.health.stop()
  }

  /** `host:port` the gRPC server listens on, once started. */
  grpcAddress(): string {
    assert(this.grpcPort !== undefined, 'storage node is not serving')
    const host = this.init.listen.slice(0, this.init.listen.lastIndexOf(':'))
    return `${host}:${this.grpcPort}`
  }

  metricsAddress(): string {
    return this.health.address()
  }

  /** `host:port` the mesh listens on once started; undefined without durability services. */
  meshAddress(): string | undefined {
    return this.serving ? this.durability?.mesh.listenAddress() : undefined
  }

  /** Each member's liveness as this node's mesh sees it; undefined without durability services. */
  liveness(): PeerLiveness | undefined {
    return this.durability?.mesh
  }
}

