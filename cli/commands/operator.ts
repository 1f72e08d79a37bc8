import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { KubeConfig } from '@kubernetes/client-node'
import type { Command } from '../main.js'
import { loadConfig, operatorConfigSchema } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { HealthServer, createRegistry } from '../../core/health-server.js'
import { Operator } from '../../operator/operator.js'
import { createKubernetesControlPlane } from '../../control-plane/kubernetes/kubernetes-control-plane.js'
import { GarbageCollector } from '../../engine/gc/index.js'
import { kubernetesClusterToken } from './gc.js'
import { startInOrder } from '../../core/startable.js'
import { serveUntilStopped, stopRequested } from './stop-signal.js'

export const command: Command = {
  summary: 'run the operator: cairn operator [--kubeconfig PATH] [--namespace cairn-system] [--lease-name NAME] [--metrics-listen ADDR]',
  async run(argv) {
    const config = loadConfig(operatorConfigSchema, argv)
    const logger = createLogger('operator', config.logLevel)
    const kubeConfig = new KubeConfig()
    if (config.kubeconfig !== undefined) kubeConfig.loadFromFile(config.kubeconfig)
    else kubeConfig.loadFromDefault()
    // Two replicas on one host (or a restarted pod) must never share an identity.
    const identity = config.identity ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
    const registry = createRegistry({ component: 'operator' })
    // The operator schedules garbage collection; the collector reads roots through the control plane and sweeps with each block store's token.
    const controlPlane = createKubernetesControlPlane({ kubeConfig }, { logger: logger.child({ component: 'control-plane' }) })
    const gc = new GarbageCollector({}, { controlPlane, logger: logger.child({ component: 'gc' }), registry, tokenFor: kubernetesClusterToken(kubeConfig, config.namespace) })
    const operator = new Operator({ ...config, identity, maxQueuedKeys: config.maxQueuedKeys, gc }, { kubeConfig, logger, registry })
    const health = new HealthServer({ listen: config.metricsListen, readiness: () => operator.readiness() }, { logger, registry })
    const stopSignal = stopRequested()
    // A part that fails (API server unreachable, RBAC) stops the ones before it: the health
    // server must not keep a process that reconciles nothing alive, answering /healthz 200.
    const stop = await startInOrder(
      [
        { name: 'health server', part: health },
        { name: 'control plane', part: controlPlane },
        { name: 'garbage collector', part: gc },
        { name: 'operator', part: operator },
      ],
      logger,
    )
    logger.info({ identity, namespace: config.namespace, lease: config.leaseName }, 'operator started')
    return serveUntilStopped(stopSignal, stop, logger, 'shutting down; releasing the leader lease')
  },
}
