/**
 * The storage-node daemon: the shard store, the ShardService gRPC server, and the
 * health/metrics server, wired and started in order and stopped in reverse.
 * Every gRPC call passes the cluster-token check (storage-node/auth.ts) and every
 * put the capacity allocation (storage-node/capacity.ts).
 */
import { Server, ServerCredentials } from '@grpc/grpc-js'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import type { StorageNodeConfig } from '../core/config.js'
import { join } from 'node:path'
import { HealthServer } from '../core/health-server.js'
import { assert } from '../core/errors.js'
import { createStorageNodeMetrics } from './metrics.js'
import { loadShardService } from './proto.js'
import { createShardService, defaultShardServiceLimits, type ShardServiceHandle, type ShardServiceLimits } from './shard-service.js'
import { createSegmentShardStore, type SegmentShardStore } from './segment-store.js'
import { JournalStore } from './journal/journal-store.js'
import { createJournalService, defaultJournalServiceLimits, type JournalServiceHandle } from './journal/journal-service.js'
import { loadJournalService } from './journal/proto.js'
import { assertTokenOrLoopback, clusterTokenInterceptor, loadClusterToken, tokenVerifier, type TokenVerifier } from './auth.js'
import { allocationBytes, CapacityGuard, freeBytes, registerCapacityMetrics } from './capacity.js'

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
  Partial<Pick<StorageNodeConfig, 'capacityFraction' | 'capacityMinBytes' | 'capacityMaxBytes' | 'clusterToken' | 'clusterTokenFile'>>

export interface StorageNodeComponents {
  logger: Logger
  registry: Registry
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
    this.service = createShardService(this.limits, { store: this.capacity, logger: components.logger, metrics })
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

  /** Computes the allocation from the filesystem's free space plus the segment bytes already stored (a restart must not shrink it). */
  private async allocate(): Promise<void> {
    const stats = await this.store.stats()
    const availableBytes = (await freeBytes(this.init.dataDir)) + stats.segmentBytes
    const rule = { fraction: this.init.capacityFraction ?? 0.8, minBytes: this.init.capacityMinBytes, maxBytes: this.init.capacityMaxBytes }
    const capacityBytes = allocationBytes(rule, availableBytes)
    this.capacity.setCapacityBytes(capacityBytes)
    this.components.logger.info({ capacityBytes, availableBytes, usedBytes: this.capacity.usedBytes(), ...rule }, 'capacity allocated')
  }

  async start(): Promise<void> {
    // Checked before anything opens: a node that would serve the network unauthenticated must not start at all.
    const token = await loadClusterToken(this.init)
    assertTokenOrLoopback(this.init.listen, token)
    if (token !== undefined) this.verifier = tokenVerifier(token)
    await this.health.start()
    await this.store.start()
    await this.allocate()
    await this.journalStore.start()
    this.grpcPort = await new Promise<number>((resolve, reject) => {
      // Plaintext with a cluster token between pods (ADR 0015); mTLS is a later step.
      this.grpc.bindAsync(this.init.listen, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)))
    })
    this.serving = true
    this.components.logger.info({ grpcAddress: this.grpcAddress(), metricsAddress: this.health.address(), authenticated: token !== undefined }, 'storage node serving')
  }

  /** Drains in-flight requests (bounded by shutdownGraceMs), then commits and closes the store. */
  async stop(): Promise<void> {
    this.serving = false
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
}
