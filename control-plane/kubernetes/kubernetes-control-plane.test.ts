import { CoreV1Api } from '@kubernetes/client-node'
import { controlPlaneConformance, type ConformanceHarness } from '../conformance.js'
import { startTestCluster } from './test-support.js'

controlPlaneConformance('kubernetes (test API server)', async () => {
  const cluster = await startTestCluster()
  const harness: ConformanceHarness = {
    cp: await cluster.controlPlane(),
    cleanup: async () => {
      await harness.cp.stop()
      await cluster.stop()
    },
    reopen: async () => {
      await harness.cp.stop()
      harness.cp = await cluster.controlPlane()
      return harness.cp
    },
    // etcd compacts at a revision: tokens at older revisions expire, one at that very revision does not.
    // So one unrelated write moves the store past every token issued so far, then compaction drops them.
    expireContinueTokens: async () => {
      await cluster.kubeConfig().makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { generateName: 'compact-' } } })
      cluster.server.compact()
    },
  }
  return harness
})
