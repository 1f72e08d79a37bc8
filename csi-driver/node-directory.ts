/**
 * Which node ids a controller may publish to in a cluster: the ones kubelet
 * registered for this driver in a CSINode object.
 */
import { StorageV1Api, type KubeConfig } from '@kubernetes/client-node'
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
