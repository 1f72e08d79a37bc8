import { CoreV1Api } from '@kubernetes/client-node'
import { startTestCluster } from '../control-plane/kubernetes/test-support.js'
import { csiConformance } from './conformance.js'

// The whole suite, against CRDs on the test API server (e2e/test-apiserver, test infrastructure).
csiConformance('kubernetes control plane (test API server)', async () => {
  const cluster = await startTestCluster()
  const cp = await cluster.controlPlane()
  return {
    cp,
    cleanup: async () => {
      await cp.stop()
      await cluster.stop()
    },
    // As in the control-plane suite: one unrelated write, then compaction drops every older token.
    expireContinueTokens: async () => {
      await cluster.kubeConfig().makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { generateName: 'compact-' } } })
      cluster.server.compact()
    },
  }
})
