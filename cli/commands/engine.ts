import { join } from 'node:path'
import type { Command } from '../main.js'
import { engineConfigSchema, loadConfig, type EngineConfig } from '../../core/config.js'
import { ConfigError } from '../../core/errors.js'
import { createLogger, type Logger } from '../../core/logger.js'
import { createRegistry, HealthServer, parseHostPort } from '../../core/health-server.js'
import { LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import { createKubernetesControlPlane, loadKubeConfig } from '../../control-plane/kubernetes/kubernetes-control-plane.js'
import { clusterTokenSecretName } from '../../control-plane/kubernetes/constants.js'
import { readClusterToken } from '../../control-plane/kubernetes/cluster-token.js'
import type { ControlPlane } from '../../control-plane/types.js'
import { startInOrder, type Startable } from '../../core/startable.js'
import { loadClusterToken } from '../../storage-node/auth.js'
import { growableExports, NbdServer, type ExportResolver, type NbdListenAddress } from '../../engine/nbd/index.js'
import { EngineHost, mountAdminApi } from '../../engine/host/index.js'
import { EngineRuntime } from '../../engine/host/runtime.js'
import { releaseParent, serveUntilStopped, stopRequested } from './stop-signal.js'

export const command: Command = {
  summary:
    'serve the volumes of a Local control plane over NBD: cairn engine --data-dir DIR [--listen 127.0.0.1:10809] [--socket PATH] [--metrics-listen ADDR] [--node-id ID] [--attach lazy|eager] [--read-only] [--volume NAME] [--export-size-ceiling-bytes N] [--flush-interval-ms N] [--control-plane local|kubernetes] [--kubeconfig FILE] [--cluster-token-file FILE] [--namespace NS]',
  async run(argv) {
    const config = loadConfig(engineConfigSchema, argv)
    const logger = createLogger('engine', config.logLevel)
    const stopSignal = stopRequested()
    try {
      const engine = new EngineProcess(config, await engineClusterToken(config), logger)
      await engine.start()
      try {
        process.send?.({ type: 'ready', nbdAddress: engine.nbdAddress(), adminAddress: engine.adminAddress() })
      } catch (err) {
        await engine.stop()
        throw err
      }
      return await serveUntilStopped(stopSignal, () => engine.stop(), logger)
    } finally {
      // Also when the start failed: listening for 'disconnect' keeps the IPC channel (and so
      // the process) alive, and an engine `cairn dev` spawned would never exit.
      releaseParent()
    }
  },
}

/** The wiring of one engine process; start order control plane → runtime → host → NBD → HTTP, stop in reverse. */
class EngineProcess {
  private readonly registry = createRegistry({ component: 'engine' })
  private readonly cp: ControlPlane & Startable
  private readonly runtime: EngineRuntime
  private readonly host: EngineHost
  private readonly nbd: NbdServer
  private readonly http: HealthServer
  /** Stops what started, in reverse; undefined until every part started. */
  private stopStarted: (() => Promise<void>) | undefined
  private readonly logger: Logger

  constructor(config: EngineConfig, clusterToken: string | undefined, logger: Logger) {
    this.logger = logger
    const cpLogger = logger.child({ component: 'control-plane' })
    this.cp =
      config.controlPlane === 'kubernetes'
        ? createKubernetesControlPlane({ kubeConfig: loadKubeConfig(config.kubeconfig === undefined ? { inCluster: true } : { path: config.kubeconfig }) }, { logger: cpLogger })
        : new LocalControlPlane({ path: join(config.dataDir, 'control-plane.sqlite') }, { logger: cpLogger })
    const volume = config.flushIntervalMs === undefined ? undefined : { flushIntervalMs: config.flushIntervalMs }
    this.runtime = new EngineRuntime({ blockStore: config.blockStore, nodeId: config.nodeId, clusterToken, volume }, { controlPlane: this.cp, logger, registry: this.registry })
    this.host = new EngineHost(
      { blockStore: config.blockStore, attach: config.attach },
      { controlPlane: this.cp, attachVolume: config.readOnly ? this.runtime.attachReadOnly : this.runtime.attachVolume, logger, registry: this.registry },
    )
    const listen: NbdListenAddress[] = [parseHostPort(config.listen)]
    if (config.socket !== undefined) listen.push({ path: config.socket })
    const served = config.volume === undefined ? this.host : onlyVolume(this.host, config.volume)
    const exports = config.exportSizeCeilingBytes === undefined ? served : growableExports(served, config.exportSizeCeilingBytes)
    this.nbd = new NbdServer({ listen }, { logger: logger.child({ component: 'nbd' }), registry: this.registry, exports })
    this.http = new HealthServer(
      {
        listen: config.metricsListen,
        readiness: () => (this.stopStarted !== undefined ? undefined : 'starting or stopping'),
        routes: (app) => mountAdminApi(app, { host: this.host, controlPlane: this.cp, logger }),
      },
      { logger, registry: this.registry },
    )
  }

  /** A part that fails stops the ones before it (in reverse), so a failed start leaves nothing open. */
  async start(): Promise<void> {
    this.stopStarted = await startInOrder(
      [
        { name: 'control plane', part: this.cp },
        { name: 'runtime', part: this.runtime },
        { name: 'host', part: this.host },
        { name: 'NBD server', part: this.nbd },
        { name: 'HTTP server', part: this.http },
      ],
      this.logger,
    )
  }

  /** Stops what started, in reverse: NBD clients go first, then every volume gets its final flush. */
  async stop(): Promise<void> {
    const stop = this.stopStarted
    this.stopStarted = undefined
    await stop?.()
  }

  nbdAddress(): string {
    const first = this.nbd.addresses()[0]
    return first !== undefined && 'port' in first ? `${first.host}:${first.port}` : ''
  }

  adminAddress(): string {
    return this.http.address()
  }
}

/** `--volume NAME`: this engine serves that one volume and no other, so no client can make it attach (and fence) another. */
function onlyVolume(host: EngineHost, volume: string): ExportResolver {
  return {
    resolve: (name) => (name === volume ? host.resolve(name) : undefined),
    list: () => [volume],
  }
}

/**
 * The token the engine sends to storage nodes: given (flag, env or file), else with the
 * Kubernetes control plane and a namespace, read from the block store's Secret.
 */
async function engineClusterToken(config: EngineConfig): Promise<string | undefined> {
  const given = await loadClusterToken(config)
  if (given !== undefined || config.controlPlane !== 'kubernetes' || config.namespace === undefined) return given
  const kubeConfig = loadKubeConfig(config.kubeconfig === undefined ? { inCluster: true } : { path: config.kubeconfig })
  const token = await readClusterToken(kubeConfig, config.namespace, config.blockStore)
  if (token === undefined) throw new ConfigError(`no cluster token: Secret ${config.namespace}/${clusterTokenSecretName(config.blockStore)} does not exist (yet)`)
  return loadClusterToken({ clusterToken: token })
}
