/**
 * The storage mesh: this node's libp2p endpoint for the durability services.
 * It admits only peers named in the current cluster map, heartbeats every other
 * member, serves its store over `/cairn/shards/1.0.0` and calls the same
 * protocol on other members (PeerShards). Design: docs/adr/0019-storage-mesh.md.
 */
import type { Libp2p } from 'libp2p'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Registry } from 'prom-client'
import type { ClusterMapProvider, ClusterMember } from '../../core/cluster-map.js'
import { CairnError, InvalidArgumentError, ResourceExhaustedError, ShuttingDownError, errorKind } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Shard, ShardAddress } from '../../core/shard.js'
import type { Startable } from '../../core/startable.js'
import type { GetResult, ShardStore } from '../shard-store.js'
import type { PeerCallOptions, PeerLiveness, PeerShards } from './types.js'
import { toHostPort, toMultiaddr } from './addresses.js'
import { HAS_COUNT_MAX, SHARD_PROTOCOL, STATUS_REQUEST_ERROR, TRANSFER_COUNT_MAX, encodeError, type ShardOp } from './codec.js'
import { MeshMessageTooLargeError, MeshUnavailableError } from './errors.js'
import { coalesce, frame } from './framing.js'
import { HEARTBEAT_PROTOCOL, HeartbeatStream, LivenessTable, serveHeartbeat } from './heartbeat.js'
import { loadOrCreatePeerIdentity, type PeerIdentity } from './identity.js'
import { createMeshMetrics, type MeshMetrics } from './metrics.js'
import { createMeshNode } from './node.js'
import { callGet, callHas, callPut, type ShardCallContext } from './shard-client.js'
import { serveShardStream } from './shard-server.js'
import { Slots } from './slots.js'

export interface StorageMeshInit {
  /** The identity lives in `<dataDir>/mesh/identity.key` (mode 0600), created once, reused forever. */
  dataDir: string
  /** `host:port` to listen on (TCP, an IP address), e.g. `127.0.0.1:0` or `0.0.0.0:7003`. */
  listen: string
  /** @default 2000 */
  heartbeatIntervalMs?: number
  /** A member is alive if it answered a heartbeat within this window. @default 3 × heartbeatIntervalMs */
  aliveWindowMs?: number
  /** Largest frame accepted or sent (a shard, a request's addresses; a put request in total). @default 16 MiB */
  maxMessageBytes?: number
  /** Bound on every call, served request and heartbeat. @default 30000 */
  callTimeoutMs?: number
  /** Concurrent shard requests served to one peer, and made to one peer; more wait (caller) or are refused (server). @default 8 */
  streamsPerPeerMax?: number
}

export interface StorageMeshComponents {
  /** This node's cluster-map id. */
  memberId: string
  /** Read on every connection and call: maps change. */
  maps: ClusterMapProvider
  /** The node's own store (the CapacityGuard in production). */
  store: ShardStore
  logger: Logger
  registry: Registry
}

const MIB = 1024 * 1024
/** Calls that may wait for a slot to one peer before more are refused. */
const WAITERS_PER_PEER_MAX = 1024

interface Limits {
  heartbeatIntervalMs: number
  aliveWindowMs: number
  maxMessageBytes: number
  callTimeoutMs: number
  streamsPerPeerMax: number
}

export class StorageMesh implements Startable, PeerShards, PeerLiveness {
  private readonly limits: Limits
  private readonly metrics: MeshMetrics
  private readonly liveness: LivenessTable
  private node: Libp2p | undefined
  private identity: PeerIdentity | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  private stopping = false
  private readonly servingByPeer = new Map<string, number>()
  private readonly callSlots = new Map<string, Slots>()
  private readonly heartbeatsInFlight = new Map<string, Promise<void>>()
  /** Heartbeat streams this node serves: ended by stop(), whose libp2p shutdown does not end them. */
  private readonly servedHeartbeatStreams = new Set<Stream>()
  /** The long-lived heartbeat stream to each member, with the identity it was opened to. */
  private readonly heartbeatStreams = new Map<string, { stream: HeartbeatStream; peerId: string | undefined; meshAddress: string }>()
  private readonly gaugedMembers = new Set<string>()

  constructor(
    private readonly init: StorageMeshInit,
    private readonly components: StorageMeshComponents,
  ) {
    this.limits = validateInit(init)
    this.metrics = createMeshMetrics(components.registry)
    this.liveness = new LivenessTable(this.limits.aliveWindowMs)
  }

  async start(): Promise<void> {
    if (this.node !== undefined) return
    this.stopping = false
    this.identity = await loadOrCreatePeerIdentity(this.init.dataDir)
    const node = await createMeshNode({
      privateKey: this.identity.privateKey,
      listen: this.init.listen,
      admit: (peerId, direction) => this.admit(peerId, direction),
      dialTimeoutMs: this.limits.callTimeoutMs,
      connectionsMax: 1024,
    })
    const perPeer = this.limits.streamsPerPeerMax
    // libp2p's own per-connection caps are a backstop above the mesh's per-peer limit.
    await node.handle(SHARD_PROTOCOL, ({ stream, connection }) => this.onShardStream(stream, connection), {
      maxInboundStreams: perPeer * 2,
      maxOutboundStreams: perPeer * 2,
    })
    await node.handle(HEARTBEAT_PROTOCOL, ({ stream, connection }) => this.onHeartbeatStream(stream, connection), {
      maxInboundStreams: 4,
      maxOutboundStreams: 4,
    })
    await node.start()
    this.node = node
    this.components.logger.info({ peerId: this.identity.peerId, listen: this.listenAddress(), created: this.identity.created }, 'storage mesh listening')
    this.heartbeatTick()
    this.heartbeatTimer = setInterval(() => this.heartbeatTick(), this.limits.heartbeatIntervalMs)
  }

  async stop(): Promise<void> {
    this.stopping = true
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer)
    this.heartbeatTimer = undefined
    const node = this.node
    this.node = undefined
    if (node === undefined) return
    for (const { stream } of this.heartbeatStreams.values()) stream.close()
    for (const stream of this.servedHeartbeatStreams) stream.abort(new ShuttingDownError('the storage mesh is stopping'))
    // Stopping libp2p closes every connection, which ends the heartbeats still in flight.
    await node.stop()
    await Promise.allSettled([...this.heartbeatsInFlight.values()])
    this.heartbeatStreams.clear()
  }

  /** This node's peer id (base58btc). Available after start. */
  peerId(): string {
    if (this.identity === undefined) throw new ShuttingDownError('the storage mesh is not started')
    return this.identity.peerId
  }

  /** `host:port` actually bound (port 0 resolved). */
  listenAddress(): string {
    const node = this.requireNode()
    const port = node.getMultiaddrs().map(toHostPort).find((a) => a !== undefined)?.split(':').at(-1)
    if (port === undefined) throw new MeshUnavailableError('the storage mesh has no TCP listen address')
    const configured = this.init.listen.slice(0, this.init.listen.lastIndexOf(':'))
    return `${configured}:${port}`
  }

  // --- PeerShards --------------------------------------------------------

  async has(memberId: string, addresses: readonly ShardAddress[], options?: PeerCallOptions): Promise<boolean[]> {
    if (memberId === this.components.memberId) return this.components.store.hasShards(addresses)
    const out: boolean[] = []
    for (const batch of batches(addresses, HAS_COUNT_MAX)) {
      out.push(...(await this.call(memberId, 'has', options, (s, ctx) => callHas(s, batch, ctx))))
    }
    return out
  }

  async get(memberId: string, addresses: readonly ShardAddress[], options?: PeerCallOptions): Promise<GetResult[]> {
    if (memberId === this.components.memberId) return this.components.store.getShards(addresses)
    const out: GetResult[] = []
    for (const batch of batches(addresses, TRANSFER_COUNT_MAX)) {
      out.push(...(await this.call(memberId, 'get', options, (s, ctx) => callGet(s, batch, ctx))))
    }
    return out
  }

  async put(memberId: string, shards: readonly Shard[], options?: PeerCallOptions): Promise<void> {
    if (memberId === this.components.memberId) {
      await this.components.store.putShards(shards)
      return
    }
    for (const batch of this.putBatches(shards)) {
      await this.call(memberId, 'put', options, (s, ctx) => callPut(s, batch, ctx))
    }
  }

  // --- PeerLiveness ------------------------------------------------------

  isAlive(memberId: string): boolean {
    if (memberId === this.components.memberId) return true
    const member = this.findMember(memberId)
    return member !== undefined && this.liveness.isAlive(memberId, member.peerId)
  }

  silentForMs(memberId: string): number | undefined {
    if (memberId === this.components.memberId) return 0
    const member = this.findMember(memberId)
    return member === undefined ? undefined : this.liveness.silentForMs(memberId, member.peerId)
  }

  // --- admission ---------------------------------------------------------

  private isKnownPeer(peerId: string): boolean {
    return this.components.maps.current().members.some((m) => m.peerId === peerId && m.id !== this.components.memberId)
  }

  private admit(peerId: PeerId, direction: 'inbound' | 'outbound'): boolean {
    if (this.isKnownPeer(peerId.toString())) return true
    this.metrics.refusedConnections.inc({ direction })
    this.components.logger.warn({ peer: peerId.toString(), direction }, 'mesh connection refused: peer not in the cluster map')
    return false
  }

  /** Re-checks the map on every stream: a member removed since the connection opened is cut off. */
  private admitStream(connection: Connection): boolean {
    if (!this.stopping && this.isKnownPeer(connection.remotePeer.toString())) return true
    if (!this.stopping) this.revoke(connection)
    return false
  }

  private revoke(connection: Connection): void {
    this.metrics.refusedConnections.inc({ direction: connection.direction })
    this.components.logger.warn({ peer: connection.remotePeer.toString() }, 'mesh connection closed: peer no longer in the cluster map')
    connection.abort(new MeshUnavailableError('peer is not in the cluster map'))
  }

  // --- serving -----------------------------------------------------------

  private async onShardStream(stream: Stream, connection: Connection): Promise<void> {
    if (!this.admitStream(connection)) return
    const peer = connection.remotePeer.toString()
    const serving = this.servingByPeer.get(peer) ?? 0
    if (serving >= this.limits.streamsPerPeerMax) {
      this.metrics.servedRequests.inc({ method: 'unknown', outcome: 'resource-exhausted' })
      await refuse(stream, new ResourceExhaustedError(`peer already has ${serving} shard requests in progress`))
      return
    }
    this.servingByPeer.set(peer, serving + 1)
    const timer = setTimeout(() => stream.abort(new MeshUnavailableError('request timed out')), this.limits.callTimeoutMs)
    try {
      const { store, logger } = this.components
      await serveShardStream(stream, { store, logger, metrics: this.metrics, maxMessageBytes: this.limits.maxMessageBytes, peerId: peer })
    } finally {
      clearTimeout(timer)
      const left = (this.servingByPeer.get(peer) ?? 1) - 1
      if (left === 0) this.servingByPeer.delete(peer)
      else this.servingByPeer.set(peer, left)
    }
  }

  /** Serves one caller's long-lived heartbeat stream; a stream without a nonce for a call timeout is cut. */
  private async onHeartbeatStream(stream: Stream, connection: Connection): Promise<void> {
    if (!this.admitStream(connection)) return
    const idleMs = Math.max(this.limits.callTimeoutMs, 3 * this.limits.heartbeatIntervalMs)
    const timer = setTimeout(() => stream.abort(new MeshUnavailableError(`heartbeat stream idle for ${idleMs} ms`)), idleMs)
    // A stopped node must be free to exit: the idle cut is never what keeps the process alive.
    timer.unref()
    this.servedHeartbeatStreams.add(stream)
    try {
      await serveHeartbeat(stream, () => timer.refresh())
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      clearTimeout(timer)
      this.servedHeartbeatStreams.delete(stream)
    }
  }

  // --- calling -----------------------------------------------------------

  private findMember(memberId: string): ClusterMember | undefined {
    return this.components.maps.current().members.find((m) => m.id === memberId)
  }

  /** Opens a stream to `memberId`, proving on the way that the remote is the member's peer id. */
  private async openStream(memberId: string, protocol: string, signal: AbortSignal): Promise<Stream> {
    const member = this.findMember(memberId)
    if (member === undefined) throw new MeshUnavailableError(`member ${memberId} is not in the cluster map`)
    if (member.meshAddress === undefined) throw new MeshUnavailableError(`member ${memberId} has no mesh address in the cluster map`)
    const node = this.requireNode()
    let connection: Connection
    try {
      // The /p2p/ part makes Noise check the remote key against the member's peer id.
      const address = toMultiaddr(member.meshAddress, member.peerId)
      connection = await node.dial(address, { signal })
    } catch (err) {
      if (isIdentityMismatch(err)) this.metrics.refusedConnections.inc({ direction: 'outbound' })
      throw new MeshUnavailableError(`cannot reach member ${memberId} at ${member.meshAddress}`, { cause: err })
    }
    if (connection.remotePeer.toString() !== member.peerId) {
      this.metrics.refusedConnections.inc({ direction: 'outbound' })
      connection.abort(new MeshUnavailableError('unexpected peer'))
      throw new MeshUnavailableError(`the peer at ${member.meshAddress} is not member ${memberId}`)
    }
    try {
      return await connection.newStream(protocol, { signal, negotiateFully: false })
    } catch (err) {
      throw new MeshUnavailableError(`cannot open a ${protocol} stream to member ${memberId}`, { cause: err })
    }
  }

  private async call<T>(
    memberId: string,
    method: ShardOp,
    options: PeerCallOptions | undefined,
    run: (stream: Stream, ctx: ShardCallContext) => Promise<T>,
  ): Promise<T> {
    if (this.stopping || this.node === undefined) throw new ShuttingDownError('the storage mesh is not running')
    const timeout = AbortSignal.timeout(this.limits.callTimeoutMs)
    const signal = options?.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
    let stream: Stream | undefined
    const onAbort = (): void => stream?.abort(new MeshUnavailableError(`call to member ${memberId} aborted`))
    signal.addEventListener('abort', onAbort, { once: true })
    let release: (() => void) | undefined
    try {
      release = await this.slotsFor(memberId).acquire(signal)
      stream = await this.openStream(memberId, SHARD_PROTOCOL, signal)
      const result = await run(stream, this.callContext())
      this.metrics.calls.inc({ method, outcome: 'ok' })
      return result
    } catch (err) {
      const typed = this.callError(err, memberId, signal, timeout)
      this.metrics.calls.inc({ method, outcome: errorKind(typed) })
      stream?.abort(typed)
      throw typed
    } finally {
      signal.removeEventListener('abort', onAbort)
      release?.()
      if (stream !== undefined && stream.status === 'open') {
        await stream.close({ signal: AbortSignal.timeout(this.limits.callTimeoutMs) }).catch(() => stream?.abort(new MeshUnavailableError('close timed out')))
      }
    }
  }

  private callError(err: unknown, memberId: string, signal: AbortSignal, timeout: AbortSignal): CairnError {
    if (timeout.aborted) return new MeshUnavailableError(`call to member ${memberId} timed out after ${this.limits.callTimeoutMs} ms`, { cause: err })
    if (signal.aborted) return new MeshUnavailableError(`call to member ${memberId} aborted`, { cause: signal.reason })
    if (err instanceof CairnError) return err
    return new MeshUnavailableError(`call to member ${memberId} failed`, { cause: err })
  }

  private callContext(): ShardCallContext {
    const protocol = 'shards'
    return {
      maxMessageBytes: this.limits.maxMessageBytes,
      onSent: (n) => this.metrics.sentBytes.inc({ protocol }, n),
      onReceived: (n) => this.metrics.receivedBytes.inc({ protocol }, n),
    }
  }

  private slotsFor(memberId: string): Slots {
    let slots = this.callSlots.get(memberId)
    if (slots === undefined) {
      slots = new Slots(this.limits.streamsPerPeerMax, WAITERS_PER_PEER_MAX)
      this.callSlots.set(memberId, slots)
    }
    return slots
  }

  /** Splits a put so each request stays within the count and byte limits the receiver enforces. */
  private putBatches(shards: readonly Shard[]): Shard[][] {
    const out: Shard[][] = []
    let batch: Shard[] = []
    let batchBytes = 0
    for (const shard of shards) {
      const bytes = shard.bytes.length
      if (bytes > this.limits.maxMessageBytes) {
        throw new MeshMessageTooLargeError(`shard of ${bytes} bytes exceeds the mesh message limit of ${this.limits.maxMessageBytes}`)
      }
      if (batch.length === TRANSFER_COUNT_MAX || batchBytes + bytes > this.limits.maxMessageBytes) {
        out.push(batch)
        batch = []
        batchBytes = 0
      }
      batch.push(shard)
      batchBytes += bytes
    }
    if (batch.length > 0) out.push(batch)
    return out
  }

  // --- heartbeats --------------------------------------------------------

  private heartbeatTick(): void {
    if (this.stopping) return
    try {
      this.checkMembers()
    } catch (err) {
      // A map provider that fails must not take the node down; the next tick tries again.
      this.components.logger.error({ err }, 'storage mesh heartbeat tick failed')
    }
  }

  /** Forgets members gone from the map, cuts their connections, updates peer_up and sends heartbeats. */
  private checkMembers(): void {
    const map = this.components.maps.current()
    const ids = new Set(map.members.map((m) => m.id))
    this.liveness.retain(ids)
    for (const id of this.gaugedMembers) {
      if (ids.has(id)) continue
      this.metrics.peerUp.remove({ member: id })
      this.gaugedMembers.delete(id)
      this.callSlots.delete(id)
      this.dropHeartbeatStream(id, new MeshUnavailableError(`member ${id} left the cluster map`))
    }
    for (const connection of this.node?.getConnections() ?? []) {
      if (!this.isKnownPeer(connection.remotePeer.toString())) this.revoke(connection)
    }
    for (const member of map.members) {
      if (member.id === this.components.memberId) continue
      this.metrics.peerUp.set({ member: member.id }, this.isAlive(member.id) ? 1 : 0)
      this.gaugedMembers.add(member.id)
      if (member.meshAddress !== undefined && !this.heartbeatsInFlight.has(member.id)) this.startHeartbeat(member)
    }
  }

  private startHeartbeat(member: ClusterMember): void {
    const beat = this.heartbeat(member).finally(() => this.heartbeatsInFlight.delete(member.id))
    this.heartbeatsInFlight.set(member.id, beat)
  }

  /**
   * One heartbeat to `member` on its long-lived stream. A stream that fails (the peer
   * restarted, or cut it as idle) is replaced by a fresh one within the same beat, so
   * only a member that cannot answer on a fresh stream goes unanswered.
   */
  private async heartbeat(member: ClusterMember): Promise<void> {
    const signal = AbortSignal.timeout(Math.min(this.limits.callTimeoutMs, this.limits.aliveWindowMs))
    const startedMs = performance.now()
    let current: HeartbeatStream | undefined
    const onAbort = (): void => current?.abort(new MeshUnavailableError('heartbeat timed out'))
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      current = this.reusableHeartbeatStream(member)
      if (current !== undefined) {
        try {
          await current.ping()
          this.answered(member, startedMs)
          return
        } catch (err) {
          this.dropHeartbeatStream(member.id, err)
          if (signal.aborted) throw err
        }
      }
      current = new HeartbeatStream(await this.openStream(member.id, HEARTBEAT_PROTOCOL, signal))
      this.metrics.heartbeatStreamsOpened.inc()
      this.heartbeatStreams.set(member.id, { stream: current, peerId: member.peerId, meshAddress: member.meshAddress as string })
      await current.ping()
      this.answered(member, startedMs)
    } catch (err) {
      this.dropHeartbeatStream(member.id, err)
      this.components.logger.debug({ member: member.id, err }, 'heartbeat unanswered')
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  private answered(member: ClusterMember, startedMs: number): void {
    this.metrics.heartbeatRttSeconds.observe((performance.now() - startedMs) / 1000)
    this.liveness.recordAnswer(member.id, member.peerId)
    this.metrics.peerUp.set({ member: member.id }, 1)
  }

  /** The member's open heartbeat stream, unless the map now names another peer or address for it. */
  private reusableHeartbeatStream(member: ClusterMember): HeartbeatStream | undefined {
    const open = this.heartbeatStreams.get(member.id)
    if (open === undefined) return undefined
    if (open.peerId === member.peerId && open.meshAddress === member.meshAddress) return open.stream
    this.dropHeartbeatStream(member.id, new MeshUnavailableError(`member ${member.id} moved to another peer or address`))
    return undefined
  }

  private dropHeartbeatStream(memberId: string, err: unknown): void {
    const open = this.heartbeatStreams.get(memberId)
    if (open === undefined) return
    this.heartbeatStreams.delete(memberId)
    open.stream.abort(err instanceof Error ? err : new MeshUnavailableError(String(err)))
  }

  private requireNode(): Libp2p {
    if (this.node === undefined) throw new ShuttingDownError('the storage mesh is not running')
    return this.node
  }
}

function validateInit(init: StorageMeshInit): Limits {
  const heartbeatIntervalMs = init.heartbeatIntervalMs ?? 2000
  const limits: Limits = {
    heartbeatIntervalMs,
    aliveWindowMs: init.aliveWindowMs ?? 3 * heartbeatIntervalMs,
    maxMessageBytes: init.maxMessageBytes ?? 16 * MIB,
    callTimeoutMs: init.callTimeoutMs ?? 30_000,
    streamsPerPeerMax: init.streamsPerPeerMax ?? 8,
  }
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`storage mesh ${key} must be a positive integer, got ${value}`)
  }
  // The frame length prefix is 32 bits, and one status byte travels in front of a shard.
  if (limits.maxMessageBytes >= 2 ** 32 - 1) throw new InvalidArgumentError('storage mesh maxMessageBytes must be below 4 GiB')
  return limits
}

function* batches<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size)
}

/** Noise refused the dial because the remote key is not the one the multiaddr names. */
function isIdentityMismatch(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === 'UnexpectedPeerError' || e.name === 'InvalidCryptoExchangeError') return true
  }
  return false
}

/** Answers a stream with a request error and closes it, without reading the request. */
async function refuse(stream: Stream, err: CairnError): Promise<void> {
  try {
    await stream.sink(coalesce(frame(encodeError(STATUS_REQUEST_ERROR, err))))
    await stream.close()
  } catch (cause) {
    stream.abort(cause instanceof Error ? cause : new Error(String(cause)))
  }
}
