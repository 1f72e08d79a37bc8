/**
 * DevEnvironment: everything `cairn dev` runs. The Local control plane lives in this
 * process; the storage nodes (k+m by default) and the engine are supervised child
 * processes (so a test can SIGKILL any of them and see it come back); the status page
 * is served here. Start order is control plane, cluster map (each node's peer id is
 * read from its data directory first), storage nodes, member health monitor, engine,
 * status page; stop is the reverse, so the engine's final flush still finds its nodes.
 *
 * Each storage node runs the durability services (mesh, scrub, repair) and reads the
 * cluster map from this control plane. A node dead or unhealthy for
 * `--member-down-timeout` is marked down (member-health.ts); `cairn node remove`
 * takes one out of the map for good, and this process then stops it; `cairn node add`
 * asks this process (status server, `POST /v1/nodes`) to start one more (ADR 0023).
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import { resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from '../../../core/logger.js'
import type { Startable } from '../../../core/startable.js'
import { FailedPreconditionError, type ClusterMap, type ClusterMember } from '../../../control-plane/types.js'
import { LocalControlPlane } from '../../../control-plane/local/local-control-plane.js'
import { createRegistry, HealthServer, parseHostPort } from '../../../core/health-server.js'
import { parseDurationMs, parseSizeBytes, type DevConfig } from '../../../core/config.js'
import { ConfigError } from '../../../core/errors.js'
import { loadOrCreatePeerIdentity } from '../../../storage-node/mesh/index.js'
import { STORAGE_NODE_RUNTIME_FLAGS } from '../../../storage-node/runtime-flags.js'
import { bootstrap, devMembers, publishMembers, updateMembers, DEV_BLOCK_STORE } from './bootstrap.js'
import { MemberHealthMonitor } from './member-health.js'
import { ChildStartError, readyMessage, readyz, Supervisor } from './supervisor.js'
import { startDevGcSchedule, type DevGcSchedule } from './gc-schedule.js'
import { devPaths, isAlive, nodePorts, readDevStateFile, removeDevState, writeDevState, type DevState } from './state.js'
import { mountFaultApi, renderStatusPage, statusJson } from './status-page.js'
import { mountNodeApi, nodeIndexesOnDisk, readNodeAddedMarker, writeNodeAddedMarker, type NodeAddRequest, type NodeAddResult } from './node-add.js'
import { ENGINE_MALLOC_ENV } from '../../../engine/host/malloc-env.js'

/** The `cairn` entry point, run by the children (dist/cli/main.js). */
const CLI_MAIN = fileURLToPath(new URL('../../main.js', import.meta.url))
const LOOPBACK = '127.0.0.1'
/** The engine's attachment identity in dev. */
const ENGINE_NODE_ID = 'dev-engine'
/** How long `cairn node add` waits for the new storage node to serve. */
const NODE_ADD_READY_TIMEOUT_MS = 90_000

/** What the engine reports over IPC once it serves (cli/commands/engine.ts). */
export interface EngineReady {
  type: 'ready'
  nbdAddress: string
  adminAddress: string
}

interface NodeHandle {
  index: number
  id: string
  address: string
  metricsAddress: string
  meshAddress: string
  dataDir: string
  /** As published in the map; re-read before every spawn (a wiped data directory gets a new identity). */
  peerId: string
  /** From `cairn node add`; undefined: its own domain, weight 1. */
  failureDomain?: string
  weight?: number
  /** The map epoch that first named it (0 for the nodes of the start): an older map does not mean it was removed. */
  addedEpoch: number
  supervisor: Supervisor<void>
}

export class DevEnvironment implements Startable {
  readonly dataDir: string
  private readonly paths: ReturnType<typeof devPaths>
  private cp: LocalControlPlane | undefined
  private nodes: NodeHandle[] = []
  private engine: Supervisor<EngineReady> | undefined
  private health: MemberHealthMonitor | undefined
  private status: HealthServer | undefined
  private gc: DevGcSchedule | undefined
  /** The status page's metrics, which the GC schedule's cairn_gc_* join. */
  private readonly registry = createRegistry({ component: 'dev' })
  private startedAt = new Date().toISOString()
  private stateWrites: Promise<void> = Promise.resolve()
  private started = false
  /** `cairn node add` requests, one at a time. */
  private adding: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly config: DevConfig,
    private readonly components: { logger: Logger },
  ) {
    this.dataDir = resolvePath(config.dataDir)
    this.paths = devPaths(this.dataDir)
  }

  async start(): Promise<void> {
    await mkdir(this.paths.nodesDir, { recursive: true })
    await this.refuseSecondDev()
    try {
      const cp = new LocalControlPlane({ path: this.paths.controlPlane }, { logger: this.components.logger.child({ component: 'control-plane' }) })
      this.cp = cp
      await cp.start()
      const policy = await bootstrap(
        cp,
        { ...this.config, nodesDir: this.paths.nodesDir, volumeSizeBytes: parseSizeBytes(this.config.size) },
        this.components.logger,
      )
      await this.prepareNodes(policy.dataShards + policy.parityShards)
      const previous = await cp.getClusterMap(DEV_BLOCK_STORE)
      await publishMembers(cp, devMembers(this.nodes, previous.members), this.components.logger)
      await Promise.all(this.nodes.map((n) => n.supervisor.start()))
      this.health = new MemberHealthMonitor(
        { downTimeoutMs: parseDurationMs(this.config.memberDownTimeout) },
        { cp, probe: (id) => this.probe(id), logger: this.components.logger.child({ component: 'member-health' }), onMap: (map) => this.followMap(map) },
      )
      await this.health.start()
      await this.startEngine()
      this.gc = await startDevGcSchedule(cp, this.config, this.components.logger, this.registry)
      await this.startStatusPage()
      this.started = true
      await this.saveState()
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  async stop(): Promise<void> {
    this.started = false
    // An add in progress finishes first, so the node it starts is stopped with the others.
    await this.adding.catch(() => undefined)
    await this.gc?.stop()
    // The engine first: its final flush needs the storage nodes.
    await this.engine?.stop()
    await this.health?.stop()
    await Promise.all(this.nodes.map((n) => n.supervisor.stop()))
    await this.status?.stop()
    await this.stateWrites
    await this.cp?.stop()
    await removeDevState(this.dataDir)
  }

  /** The state written to dev.json. */
  state(): DevState {
    const ready = this.engine?.info
    const nbdAddress = ready?.nbdAddress ?? this.config.listen
    return {
      pid: process.pid,
      startedAt: this.startedAt,
      dataDir: this.dataDir,
      volume: this.config.volume,
      nbd: { address: nbdAddress, uri: `nbd://${nbdAddress}/${this.config.volume}` },
      statusUrl: this.status === undefined ? '' : `http://${this.status.address()}/`,
      engine: {
        nodeId: ENGINE_NODE_ID,
        pid: this.engine?.pid ?? null,
        state: this.engine?.state ?? 'stopped',
        restarts: this.engine?.restarts ?? 0,
        adminAddress: ready?.adminAddress ?? null,
      },
      nodes: this.nodes.map((n) => ({
        id: n.id,
        address: n.address,
        metricsAddress: n.metricsAddress,
        dataDir: n.dataDir,
        meshAddress: n.meshAddress,
        peerId: n.peerId,
        pid: n.supervisor.pid ?? null,
        state: n.supervisor.state,
        restarts: n.supervisor.restarts,
      })),
    }
  }

  /** One dev per data directory; children a crashed dev left behind are stopped first. */
  private async refuseSecondDev(): Promise<void> {
    const previous = await readDevStateFile(this.dataDir).catch(() => undefined)
    if (previous === undefined) return
    if (previous.pid !== process.pid && isAlive(previous.pid)) {
      throw new FailedPreconditionError(`cairn dev is already running for ${this.dataDir} (pid ${previous.pid})`)
    }
    const orphans = [previous.engine.pid, ...previous.nodes.map((n) => n.pid)].filter((p): p is number => p !== null)
    for (const pid of orphans) {
      // Only a process that is still one of ours (its command line names this data dir) is killed: pids get reused.
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
      if (cmdline.includes(this.dataDir) && cmdline.includes(CLI_MAIN)) {
        this.components.logger.warn({ pid }, 'stopping a child left behind by a crashed cairn dev')
        process.kill(pid, 'SIGKILL')
      }
    }
  }

  /**
   * Ports, identity and supervisor of every storage node not removed by `cairn node remove`.
   * @throws ConfigError when --storage-nodes is below k+m
   * @throws FailedPreconditionError when removals left fewer than k+m nodes
   */
  private async prepareNodes(shardsPerChunk: number): Promise<void> {
    const count = this.config.storageNodes ?? shardsPerChunk
    if (count < shardsPerChunk) throw new ConfigError(`--storage-nodes ${count} is below k+m = ${shardsPerChunk}: a chunk's shards need that many nodes`)
    // The engine's NBD port and the status port are dev's own listeners: no node may take them
    // (a node holding the NBD port kept every engine restart failing with EADDRINUSE).
    const taken = new Set([this.config.listen, this.config.statusListen].map(portOf).filter((p) => p > 0))
    for (let i = 0; i < count; i++) {
      if (await exists(this.paths.nodeRemoved(i))) {
        this.components.logger.info({ node: `node-${i}` }, 'node was removed from the cluster (cairn node remove); not starting it')
        continue
      }
      this.nodes.push(await this.prepareNode(i, taken))
    }
    // Nodes `cairn node add` started on an earlier run, beyond --storage-nodes.
    for (const i of (await nodeIndexesOnDisk(this.paths.nodesDir)).filter((n) => n >= count).sort((a, b) => a - b)) {
      if ((await exists(this.paths.nodeAdded(i))) && !(await exists(this.paths.nodeRemoved(i)))) this.nodes.push(await this.prepareNode(i, taken))
    }
    if (this.nodes.length < shardsPerChunk) {
      throw new FailedPreconditionError(`only ${this.nodes.length} storage nodes remain after removals; k+m = ${shardsPerChunk} are needed (raise --storage-nodes)`)
    }
  }

  private async prepareNode(i: number, taken: Set<number>): Promise<NodeHandle> {
    const ports = await nodePorts(this.dataDir, i, LOOPBACK, taken)
    const id = `node-${i}`
    const address = `${LOOPBACK}:${ports.grpcPort}`
    const metricsAddress = `${LOOPBACK}:${ports.metricsPort}`
    const meshAddress = `${LOOPBACK}:${ports.meshPort}`
    const dataDir = this.paths.node(i)
    const added = await readNodeAddedMarker(this.paths.nodeAdded(i))
    // Read (or made) before the node starts, so the map names it before it dials anyone.
    const { peerId } = await loadOrCreatePeerIdentity(dataDir)
    const args = [
      'storage-node', '--data-dir', dataDir, '--listen', address, '--metrics-listen', metricsAddress, '--log-level', this.config.logLevel,
      '--member-id', id, '--block-store', DEV_BLOCK_STORE, '--mesh-listen', meshAddress,
      '--control-plane', 'local', '--control-plane-path', this.paths.controlPlane, '--cluster-map-refresh-interval', '1s',
      '--scrub-bytes-per-second', String(this.config.scrubBytesPerSecond), '--scrub-interval', this.config.scrubInterval,
      '--repair-bandwidth-bytes-per-second', String(this.config.repairBandwidthBytesPerSecond), '--repair-interval', this.config.repairInterval,
      '--repair-settle', this.config.repairSettle,
    ]
    const handle: NodeHandle = {
      index: i, id, address, metricsAddress, meshAddress, dataDir, peerId, addedEpoch: 0,
      ...(added?.failureDomain === undefined ? {} : { failureDomain: added.failureDomain }),
      ...(added?.weight === undefined ? {} : { weight: added.weight }),
      supervisor: undefined as unknown as Supervisor<void>,
    }
    handle.supervisor = new Supervisor<void>(
      {
        name: id,
        command: process.execPath,
        args: () => [...STORAGE_NODE_RUNTIME_FLAGS, CLI_MAIN, ...args],
        beforeSpawn: () => this.refreshIdentity(handle),
        ready: (_child, signal) => readyz(metricsAddress, signal),
        // The channel is the node's lifeline: if dev dies, even by SIGKILL, it closes and the node stops.
        ipc: true,
      },
      { logger: this.components.logger, onChange: () => this.stateChanged() },
    )
    return handle
  }

  /** A node whose data directory was wiped gets a new identity: publish it before the node runs. */
  private async refreshIdentity(node: NodeHandle): Promise<void> {
    const { peerId } = await loadOrCreatePeerIdentity(node.dataDir)
    if (peerId === node.peerId || this.cp === undefined) return
    this.components.logger.warn({ node: node.id, from: node.peerId, to: peerId }, 'node has a new mesh identity (data directory replaced); publishing it')
    node.peerId = peerId
    await updateMembers(this.cp, (ms) => ms.map((m) => (m.id === node.id ? { ...m, peerId } : m)), this.components.logger)
  }

  /** Healthy: its process is up and its /readyz answers now. */
  private async probe(id: string): Promise<boolean> {
    const node = this.nodes.find((n) => n.id === id)
    if (node === undefined || node.supervisor.state !== 'up') return false
    const res = await fetch(`http://${node.metricsAddress}/readyz`, { signal: AbortSignal.timeout(2000) })
    return res.ok
  }

  /** Stops the nodes `cairn node remove` took out of the map: they must not come back on their own. */
  private async followMap(map: ClusterMap): Promise<void> {
    const removed = this.nodes.filter((n) => n.addedEpoch <= map.epoch && !map.members.some((m) => m.id === n.id))
    if (removed.length === 0) return
    this.nodes = this.nodes.filter((n) => !removed.includes(n))
    for (const n of removed) {
      this.components.logger.warn({ node: n.id }, 'node left the cluster map; stopping it')
      // `cairn node remove` writes it first; written here too so a restart never brings the node back.
      await writeFile(this.paths.nodeRemoved(n.index), `${JSON.stringify({ removedAt: new Date().toISOString() })}\n`).catch(() => undefined)
    }
    await Promise.all(removed.map((n) => n.supervisor.stop()))
    this.stateChanged()
  }

  private async startEngine(): Promise<void> {
    const args = [
      'engine',
      '--data-dir', this.dataDir,
      '--listen', this.config.listen,
      '--metrics-listen', `${LOOPBACK}:0`,
      '--node-id', ENGINE_NODE_ID,
      '--block-store', DEV_BLOCK_STORE,
      '--attach', 'eager',
      '--log-level', this.config.logLevel,
    ]
    this.engine = new Supervisor<EngineReady>(
      { name: 'engine', command: process.execPath, args: () => [CLI_MAIN, ...args], env: ENGINE_MALLOC_ENV, ipc: true, ready: readyMessage<EngineReady> },
      { logger: this.components.logger, onChange: () => this.stateChanged() },
    )
    await this.engine.start()
  }

  private async startStatusPage(): Promise<void> {
    const cp = this.cp as LocalControlPlane
    const view = async () => {
      const map = await cp.getClusterMap(DEV_BLOCK_STORE)
      return { state: this.state(), volumes: (await cp.listVolumes({ limit: 1000 })).items, clusterMapEpoch: map.epoch, members: map.members }
    }
    this.status = new HealthServer(
      {
        listen: this.config.statusListen,
        readiness: () => (this.engine?.state === 'up' ? undefined : `engine is ${this.engine?.state ?? 'not started'}`),
        routes: (app) => {
          app.get('/', async (_req, res) => void res.type('html').send(renderStatusPage(await view())))
          app.get('/status.json', async (_req, res) => void res.json(statusJson(await view())))
          mountFaultApi(app, (name) => this.supervisorOf(name))
          mountNodeApi(app, (request) => this.addNode(request))
        },
      },
      { logger: this.components.logger, registry: this.registry },
    )
    await this.status.start()
  }

  /**
   * `cairn node add`: a new `node-N` (N never used before) is started, and only once it
   * serves is it added to the cluster map, so no write is placed on it before it can
   * take one. The marker is written first: a dev restarted after this starts the node
   * again. The other nodes' repairers then move shards onto it (rebalance).
   * @throws FailedPreconditionError when dev is not running
   * @throws ChildStartError when the node does not become ready (it is stopped, its marker left for inspection)
   */
  addNode(request: NodeAddRequest): Promise<NodeAddResult> {
    const run = this.adding.catch(() => undefined).then(() => this.addNodeNow(request))
    this.adding = run
    return run
  }

  private async addNodeNow(request: NodeAddRequest): Promise<NodeAddResult> {
    const cp = this.cp
    if (cp === undefined || !this.started) throw new FailedPreconditionError('cairn dev is not running; cannot add a node')
    const used = [...this.nodes.map((n) => n.index), ...(await nodeIndexesOnDisk(this.paths.nodesDir))]
    const index = Math.max(-1, ...used) + 1
    await writeNodeAddedMarker(this.paths.nodeAdded(index), request)
    const taken = new Set(this.nodes.flatMap((n) => [n.address, n.metricsAddress, n.meshAddress].map(portOf)))
    const node = await this.prepareNode(index, taken)
    this.components.logger.info({ node: node.id, failureDomain: node.failureDomain ?? node.id, weight: node.weight ?? 1 }, 'adding a storage node')
    // A supervisor retries a child that never gets ready forever; an add gives up after a while.
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ChildStartError(`${node.id} did not become ready within ${NODE_ADD_READY_TIMEOUT_MS} ms; it was stopped`)), NODE_ADD_READY_TIMEOUT_MS)
    })
    try {
      await Promise.race([node.supervisor.start(), timedOut])
    } catch (err) {
      await node.supervisor.stop()
      throw err
    } finally {
      clearTimeout(timer)
    }
    const [member] = devMembers([node])
    const map = await updateMembers(cp, (ms) => [...ms.filter((m) => m.id !== node.id), member as ClusterMember], this.components.logger)
    node.addedEpoch = map.epoch
    this.nodes.push(node)
    this.stateChanged()
    return { id: node.id, address: node.address, meshAddress: node.meshAddress, peerId: node.peerId, failureDomain: member?.failureDomain ?? node.id, weight: member?.weight ?? 1, epoch: map.epoch }
  }

  /** The supervisor of `engine` or `node-N`, for fault injection. */
  private supervisorOf(name: string): Supervisor<unknown> | undefined {
    if (name === 'engine') return this.engine as Supervisor<unknown> | undefined
    return this.nodes.find((n) => n.id === name)?.supervisor as Supervisor<unknown> | undefined
  }

  private stateChanged(): void {
    if (this.started) void this.saveState()
  }

  /** Serialised so that an older state never overwrites a newer one. */
  private saveState(): Promise<void> {
    const state = this.state()
    this.stateWrites = this.stateWrites
      .then(() => writeDevState(this.paths.state, state))
      .catch((err: unknown) => this.components.logger.error({ err }, 'cannot write dev.json'))
    return this.stateWrites
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}

/** The port of a `host:port` listen address. */
function portOf(address: string): number {
  return parseHostPort(address).port
}
