/**
 * Which node ids a controller may publish to in a cluster: the ones kubelet
 * registered for this driver in a CSINode object.
 */
import { CoreV1Api, StorageV1Api, type KubeConfig } from '@kubernetes/client-node'
import type { EngineLocator } from './engines.js'
import type { NodeDirectory } from './controller-service.js'
import { NodeLookupUnavailableError } from './errors.js'
import { CSI_DRIVER_NAME } from './identity-service.js'

/** Kubernetes node ids: a node whose CSINode lists this driver with that node id (what kubelet registers). */
export function kubernetesNodeDirectory(kubeConfig: KubeConfig): NodeDirectory {
  const api = kubeConfig.makeApiClient(StorageV1Api)
  return async (nodeId) => {
    try {
      const csiNode = await api.readCSINode({ name: nodeId })
      return (csiNode.spec?.drivers ?? []).some((d) => d.name === CSI_DRIVER_NAME && d.nodeID === nodeId)
    } catch (err) {
      if ((err as { code?: unknown }).code === 404) return false
      throw new NodeLookupUnavailableError(`cannot read CSINode ${nodeId}: ${(err as Error).message}`, { cause: err })
    }
  }
}

export interface NodePluginPods {
  /** Namespace of the node plugin's DaemonSet (the release namespace). */
  namespace: string
  /** Label selector of its pods. @default app.kubernetes.io/component=csi-node */
  labelSelector?: string
  /** Name of the container port serving the node admin API (csi-driver/node-admin.ts). @default metrics */
  portName?: string
}

/**
 * Where an attached volume's engine answers in a cluster: the node admin API of the
 * running node plugin pod on that node (csi-driver/node-admin.ts forwards to the
 * engine). Undefined when no such pod runs or it has no IP yet.
 */
export function kubernetesEngineLocator(kubeConfig: KubeConfig, pods: NodePluginPods): EngineLocator {
  const api = kubeConfig.makeApiClient(CoreV1Api)
  const labelSelector = pods.labelSelector ?? 'app.kubernetes.io/component=csi-node'
  const portName = pods.portName ?? 'metrics'
  return async (nodeId) => {
    let list
    try {
      list = await api.listNamespacedPod({ namespace: pods.namespace, labelSelector, fieldSelector: `spec.nodeName=${nodeId},status.phase=Running` })
    } catch (err) {
      throw new NodeLookupUnavailableError(`cannot list node plugin pods on ${nodeId}: ${(err as Error).message}`, { cause: err })
    }
    for (const pod of list.items) {
      const ip = pod.status?.podIP
      const port = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []).find((p) => p.name === portName)?.containerPort
      if (ip !== undefined && ip !== '' && port !== undefined) return `${ip.includes(':') ? `[${ip}]` : ip}:${port}`
    }
    return undefined
  }
}
