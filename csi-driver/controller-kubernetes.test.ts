import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { CoreV1Api, StorageV1Api } from '@kubernetes/client-node'
import { kubernetesNodeDirectory } from './node-directory.js'
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

describe('kubernetes node directory (CSINode)', () => {
  it('knows a node whose CSINode registers csi.cairn.dev with that id, nothing else, and says when it cannot tell', async () => {
    const cluster = await startTestCluster()
    try {
      const storage = cluster.kubeConfig().makeApiClient(StorageV1Api)
      await storage.createCSINode({ body: { metadata: { name: 'node-k' }, spec: { drivers: [{ name: 'csi.cairn.dev', nodeID: 'node-k' }] } } })
      await storage.createCSINode({ body: { metadata: { name: 'node-o' }, spec: { drivers: [{ name: 'other.csi.example.com', nodeID: 'node-o' }] } } })
      const nodes = kubernetesNodeDirectory(cluster.kubeConfig())
      assert.equal(await nodes('node-k'), true)
      assert.equal(await nodes('node-o'), false)
      assert.equal(await nodes('node-missing'), false)
      await cluster.server.stop()
      await assert.rejects(nodes('node-k'), { name: 'NodeLookupUnavailableError' })
    } finally {
      await cluster.stop().catch(() => undefined)
    }
  })
})
