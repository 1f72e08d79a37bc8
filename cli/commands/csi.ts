/**
 * `cairn csi`: the CSI driver. Controller mode serves Identity + Controller, node mode
 * Identity + Node, all mode the three, on one Unix socket; health and metrics on HTTP.
 *
 * With the Local control plane it uses the `cairn dev` in --data-dir (no further flags
 * needed); it never creates an empty control plane, so a wrong --data-dir fails loudly.
 */
import { access, mkdir, readFile, stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Command } from '../main.js'
import { csiConfigSchema, loadConfig, parseSizeBytes, runningInKubernetes, type CsiConfig } from '../../core/config.js'
import { CairnError } from '../../core/errors.js'
import { createLogger, type Logger } from '../../core/logger.js'
import { createRegistry, HealthServer } from '../../core/health-server.js'
import type { Startable } from '../../core/startable.js'
import type { ControlPlane } from '../../control-plane/types.js'
import { LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import { createKubernetesControlPlane, loadKubeConfig } from '../../control-plane/kubernetes/kubernetes-control-plane.js'
import { CsiControllerService, type NodeDirectory } from '../../csi-driver/controller-service.js'
import type { KubeConfig } from '@kubernetes/client-node'
import { AdminVolumeEngines, type EngineLocator } from '../../csi-driver/engines.js'
import { ServiceNotAvailableError } from '../../csi-driver/errors.js'
import { kubernetesEngineLocator, kubernetesNodeDirectory } from '../../csi-driver/node-directory.js'
import { mountNodeAdminApi } from '../../csi-driver/node-admin.js'
import { NodeStateStore } from '../../csi-driver/state.js'
import { cachedClusterToken } from '../../control-plane/kubernetes/cluster-token.js'
import { isLoopbackListen, tokenVerifier } from '../../storage-node/auth.js'
import type { Express } from 'express'
import { CsiIdentityService, controlPlaneReadiness } from '../../csi-driver/identity-service.js'
import { KeyedLocks } from '../../csi-driver/locks.js'
import { CsiServer } from '../../csi-driver/server.js'
import type { NodeService } from '../../csi-driver/types.js'
import { readDevState } from './dev/state.js'
import { serveUntilStopped, stopRequested } from './stop-signal.js'

export const command: Command = {
  summary:
    'run the CSI driver: cairn csi --mode controller|node|all [--endpoint unix:///csi/csi.sock] [--node-id ID] [--control-plane local|kubernetes] [--data-dir .cairn] [--metrics-listen ADDR]',
  async run(argv) {
    const config = loadConfig(csiConfigSchema, argv)
    const logger = createLogger('csi', config.logLevel)
    const stopSignal = stopRequested()
    const driver = new CsiDriverProcess(config, logger)
    try {
      await driver.start()
    } catch (err) {
      await driver.stop()
      throw err
    }
    return serveUntilStopped(stopSignal, () => driver.stop(), logger)
  },
}

/** No Local control plane in --data-dir. */
export class NoLocalControlPlaneError extends CairnError {
  override readonly name = 'NoLocalControlPlaneError'
  readonly kind = 'not-found'
}

/** A node service factory as csi-driver/node-service.ts exports it. */
type NodeServiceFactory = (deps: Record<string, unknown>) => NodeService & Startable

/** The wiring of one driver process; start order control plane → node service → CSI socket → HTTP, stop in reverse. */
export class CsiDriverProcess implements Startable {
  private readonly registry = createRegistry({ component: 'csi' })
  private readonly local: boolean
  private cp: ControlPlane | undefined
  private kubeConfig: KubeConfig | undefined
  private started: Startable[] = []
  private tokenSource: (() => Promise<string | undefined>) | undefined

  constructor(
    private readonly config: CsiConfig,
    private readonly logger: Logger,
  ) {
    this.local = (config.controlPlane ?? (runningInKubernetes() ? 'kubernetes' : 'local')) === 'local'
  }

  async start(): Promise<void> {
    const cp = await this.openControlPlane()
    this.cp = cp
    this.started.push(cp)
    const serveController = this.config.mode !== 'node'
    const node = this.config.mode === 'controller' ? undefined : await this.startNodeService()
    const identity = new CsiIdentityService(
      { version: await packageVersion(), controller: serveController },
      { readiness: controlPlaneReadiness(cp), logger: this.logger },
    )
    const server = new CsiServer(
      { endpoint: this.config.endpoint },
      { logger: this.logger.child({ component: 'csi-server' }), registry: this.registry, identity, controller: serveController ? this.controller(cp) : undefined, node },
    )
    await server.start()
    this.started.push(server)
    const adminRoutes = this.config.mode === 'controller' ? undefined : this.nodeAdminRoutes()
    const http = new HealthServer({ listen: this.config.metricsListen, readiness: controlPlaneReadiness(cp), routes: adminRoutes }, { logger: this.logger, registry: this.registry })
    await http.start()
    this.started.push(http)
  }

  async stop(): Promise<void> {
    const started = this.started.reverse()
    this.started = []
    for (const component of started) await component.stop()
  }

  private nodeId(): string {
    return this.config.nodeId ?? hostname().toLowerCase()
  }

  private defaults(): { blockStore: string; storagePolicy: string } {
    const fallback = this.local ? 'local' : 'default'
    return { blockStore: this.config.defaultBlockStore ?? fallback, storagePolicy: this.config.defaultStoragePolicy ?? fallback }
  }

  private async openControlPlane(): Promise<ControlPlane> {
    const logger = this.logger.child({ component: 'control-plane' })
    let cp: ControlPlane
    if (this.local) {
      const path = join(resolvePath(this.config.dataDir), 'control-plane.sqlite')
      await access(path).catch((err: unknown) => {
        throw new NoLocalControlPlaneError(`no control plane at ${path}; run 'cairn dev --data-dir ${this.config.dataDir}' first or pass --control-plane kubernetes`, { cause: err })
      })
      cp = new LocalControlPlane({ path }, { logger })
    } else {
      const kubeConfig = loadKubeConfig(this.config.kubeconfig === undefined ? { inCluster: true } : { path: this.config.kubeconfig })
      this.kubeConfig = kubeConfig
      cp = createKubernetesControlPlane({ kubeConfig }, { logger })
    }
    await cp.start()
    return cp
  }

  /**
   * The default block store's cluster token in a cluster (read when first needed:
   * the operator may create the Secret after the driver starts); undefined locally.
   */
  private clusterToken(): (() => Promise<string | undefined>) | undefined {
    if (this.kubeConfig === undefined || this.config.namespace === undefined) return undefined
    return (this.tokenSource ??= cachedClusterToken(this.kubeConfig, this.config.namespace, this.defaults().blockStore))
  }

  /**
   * The node admin API (csi-driver/node-admin.ts) on the metrics server. Locally it needs
   * no token and is served only on a loopback listener; in a cluster it is served only with
   * the cluster token to check, and refuses every request until the Secret exists.
   */
  private nodeAdminRoutes(): ((app: Express) => void) | undefined {
    const store = new NodeStateStore(this.stateDirFor(this.nodeId()))
    const logger = this.logger.child({ component: 'node-admin' })
    if (this.local) {
      // No token to check locally: served only where nothing but this machine can reach it.
      if (isLoopbackListen(this.config.metricsListen)) return (app) => mountNodeAdminApi(app, { store, logger })
      logger.warn({ metricsListen: this.config.metricsListen }, 'node admin API not served: without a cluster token it is served on loopback only')
      return undefined
    }
    const token = this.clusterToken()
    if (token === undefined) return undefined
    const authorize = async (header: string | undefined): Promise<boolean> => {
      const expected = await token().catch((err: unknown) => {
        // Refused, not crashed: the controller reports the engine unavailable and retries.
        logger.warn({ err }, 'cannot read the cluster token; refusing node admin requests')
        return undefined
      })
      return expected !== undefined && tokenVerifier(expected)(header)
    }
    return (app) => mountNodeAdminApi(app, { store, authorize, logger })
  }

  private controller(cp: ControlPlane): CsiControllerService {
    const defaults = this.defaults()
    return new CsiControllerService(
      { defaultBlockStore: defaults.blockStore, defaultStoragePolicy: defaults.storagePolicy, defaultVolumeSizeBytes: parseSizeBytes(this.config.defaultVolumeSize) },
      {
        controlPlane: cp,
        engines: new AdminVolumeEngines(this.engineLocator(), undefined, this.clusterToken()),
        locks: new KeyedLocks(),
        logger: this.logger.child({ component: 'csi-controller' }),
        nodes: this.kubeConfig === undefined ? localNodeDirectory(resolvePath(this.config.dataDir)) : kubernetesNodeDirectory(this.kubeConfig),
      },
    )
  }

  private stateDirFor(nodeId: string): string {
    return this.config.stateDir ?? localNodeRegistration(resolvePath(this.config.dataDir), nodeId)
  }

  /**
   * Where the engine of an attached volume answers. Locally: a node plugin's per-volume engine
   * (its state file under the node's state dir), else the `cairn dev` engine. In Kubernetes the
   * node plugin pod on the attachment's node (csi-driver/node-admin.ts); without a namespace
   * to find it in, attached volumes cannot be snapshotted (UNAVAILABLE).
   */
  private engineLocator(): EngineLocator {
    if (!this.local) {
      // In a cluster: the node plugin pod on the attachment's node forwards to its engine.
      if (this.kubeConfig === undefined || this.config.namespace === undefined) return async () => undefined
      return kubernetesEngineLocator(this.kubeConfig, { namespace: this.config.namespace })
    }
    const dataDir = resolvePath(this.config.dataDir)
    return async (nodeId, volume) => {
      const fromNode = await nodeEngineAddress(this.stateDirFor(nodeId), volume)
      if (fromNode !== undefined) return fromNode
      const dev = await readDevState(dataDir).catch(() => undefined)
      return dev !== undefined && dev.engine.nodeId === nodeId ? (dev.engine.adminAddress ?? undefined) : undefined
    }
  }

  private async startNodeService(): Promise<NodeService> {
    const factory = await loadNodeServiceFactory()
    const nodeId = this.nodeId()
    // This node's registration for a Local controller (see localNodeDirectory).
    await mkdir(localNodeRegistration(resolvePath(this.config.dataDir), nodeId), { recursive: true })
    const node = factory({
      nodeId,
      stateDir: this.stateDirFor(nodeId),
      engine: {
        argsPrefix: [fileURLToPath(new URL('../main.js', import.meta.url))],
        dataDir: resolvePath(this.config.dataDir),
        blockStore: this.defaults().blockStore,
        logLevel: this.config.logLevel,
        // The node's engines use the driver's control plane: in a cluster, the CRDs.
        controlPlane: this.local ? 'local' : 'kubernetes',
        ...(this.config.kubeconfig === undefined ? {} : { kubeconfig: resolvePath(this.config.kubeconfig) }),
      },
      maxVolumesPerNode: this.config.maxVolumesPerNode,
      logger: this.logger.child({ component: 'csi-node' }),
    })
    await node.start()
    this.started.push(node)
    return node
  }
}

/** The directory whose existence registers a node plugin with a Local controller (also its default state dir). */
export function localNodeRegistration(dataDir: string, nodeId: string): string {
  return join(dataDir, 'csi-node', nodeId)
}

/**
 * Local node ids: a node plugin creates `<data-dir>/csi-node/<node-id>` when it starts (its
 * registration, as kubelet's is a CSINode entry), and the `cairn dev` engine counts as a node.
 */
export function localNodeDirectory(dataDir: string): NodeDirectory {
  return async (nodeId) => {
    if (nodeId.includes('/') || nodeId === '.' || nodeId === '..') return false
    if ((await stat(localNodeRegistration(dataDir, nodeId)).catch(() => undefined))?.isDirectory() === true) return true
    const dev = await readDevState(dataDir).catch(() => undefined)
    return dev?.engine.nodeId === nodeId
  }
}

/** The node service factory, or ServiceNotAvailableError when this build has none (never a stand-in). */
async function loadNodeServiceFactory(): Promise<NodeServiceFactory> {
  // A computed specifier: the node service is built separately and may be absent from a build.
  const specifier = '../../csi-driver/node-service.js'
  let mod: { createNodeService?: unknown }
  try {
    mod = (await import(specifier)) as { createNodeService?: unknown }
  } catch (err) {
    throw new ServiceNotAvailableError(`the CSI node service is not available in this build (${(err as Error).message}); use --mode controller`, { cause: err })
  }
  if (typeof mod.createNodeService !== 'function') {
    throw new ServiceNotAvailableError('csi-driver/node-service.js does not export createNodeService; use --mode controller')
  }
  return mod.createNodeService as NodeServiceFactory
}

/** The admin address of the engine a node plugin runs for `volume`, from its state file, if any. */
async function nodeEngineAddress(stateDir: string, volume: string): Promise<string | undefined> {
  try {
    const specifier = '../../csi-driver/state.js'
    const { NodeStateStore } = (await import(specifier)) as { NodeStateStore: new (dir: string) => { read(id: string): Promise<{ engine: { adminAddress: string } | null } | undefined> } }
    return (await new NodeStateStore(stateDir).read(volume))?.engine?.adminAddress
  } catch {
    return undefined
  }
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}
