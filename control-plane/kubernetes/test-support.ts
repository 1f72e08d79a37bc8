/**
 * Test support: a test API server (e2e/test-apiserver, test infrastructure) with the
 * CRDs of crds/ installed, and Kubernetes control planes over it, each with its own
 * client loaded from the server's kubeconfig file, as a separate process would.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { KubeConfig } from '@kubernetes/client-node'
import { silentLogger } from '../../core/logger.js'
import { TestApiServer } from '../../e2e/test-apiserver/index.js'
import { createKubernetesControlPlane, type KubernetesControlPlane, type KubernetesControlPlaneInit } from './kubernetes-control-plane.js'

/** crds/ from the compiled file in dist/control-plane/kubernetes/. */
export const CRD_DIR = fileURLToPath(new URL('../../../crds/', import.meta.url))

export interface TestCluster {
  server: TestApiServer
  kubeconfigPath: string
  /** A new KubeConfig from the kubeconfig file: a client that shares nothing with the others. */
  kubeConfig(): KubeConfig
  /** A started control plane with its own client. */
  controlPlane(init?: Omit<KubernetesControlPlaneInit, 'kubeConfig'>): Promise<KubernetesControlPlane>
  stop(): Promise<void>
}

export async function startTestCluster(): Promise<TestCluster> {
  const server = new TestApiServer()
  await server.start()
  await server.installCrds(CRD_DIR)
  const dir = await mkdtemp(join(tmpdir(), 'cairn-kcp-'))
  const kubeconfigPath = join(dir, 'kubeconfig')
  await server.writeKubeconfig(kubeconfigPath)
  const kubeConfig = (): KubeConfig => {
    const kc = new KubeConfig()
    kc.loadFromFile(kubeconfigPath)
    return kc
  }
  return {
    server,
    kubeconfigPath,
    kubeConfig,
    async controlPlane(init = {}) {
      const cp = createKubernetesControlPlane({ ...init, kubeConfig: kubeConfig() }, { logger: silentLogger() })
      await cp.start()
      return cp
    },
    async stop() {
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
