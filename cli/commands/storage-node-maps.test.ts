import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../core/logger.js'
import { storageNodeDurability, loadConfig, storageNodeConfigSchema } from '../../core/config.js'
import { LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import type { ClusterMember } from '../../control-plane/types.js'
import { openMapSource, PatientClusterMaps } from './storage-node-maps.js'

const member = (id: string): ClusterMember => ({ id, address: '127.0.0.1:1', peerId: `peer-${id}`, failureDomain: id, weight: 1, state: 'active' })

test('a node starts before its block store has a map: empty map until one is published, then newer epochs only, earlier ones kept', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-node-maps-'))
  const path = join(dir, 'cp.sqlite')
  const writer = new LocalControlPlane({ path }, { logger: silentLogger() })
  await writer.start()
  const maps = new PatientClusterMaps({ blockStore: 'local', refreshIntervalMs: 60_000, historyMax: 1 }, { source: new LocalControlPlane({ path }, { logger: silentLogger() }), logger: silentLogger() })
  try {
    await maps.start()
    assert.deepEqual(maps.current(), { epoch: 0, members: [] }, 'no block store yet: an empty map, not a failed start')
    await writer.createBlockStore({ name: 'local', hostPath: dir, failureDomainKey: 'cairn.dev/node' })
    await maps.refresh()
    assert.equal(maps.current().members.length, 0)
    await writer.publishClusterMap('local', { epoch: 1, members: [member('a')] })
    await maps.refresh()
    assert.equal(maps.current().epoch, 1)
    await writer.publishClusterMap('local', { epoch: 2, members: [member('a'), member('b')] })
    await writer.publishClusterMap('local', { epoch: 3, members: [member('b')] })
    await maps.refresh()
    assert.equal(maps.current().epoch, 3)
    assert.deepEqual(maps.history().map((m) => m.epoch), [1], 'epoch 2 was never seen; history is bounded by historyMax')
  } finally {
    await maps.stop()
    await writer.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('--control-plane local with a missing file is refused instead of creating an empty control plane', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-node-maps-missing-'))
  try {
    const argv = ['--data-dir', dir, '--member-id', 'n', '--block-store', 'local', '--mesh-listen', '127.0.0.1:0', '--control-plane', 'local', '--control-plane-path', join(dir, 'nope.sqlite')]
    const durability = storageNodeDurability(loadConfig(storageNodeConfigSchema, argv, {}))
    assert.ok(durability !== undefined)
    await assert.rejects(openMapSource(durability, silentLogger()), { name: 'NoControlPlaneFileError' })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('--control-plane kubernetes reads the BlockStore map with one GET: absent block store, then its published map', async () => {
  const { startTestCluster } = await import('../../control-plane/kubernetes/test-support.js')
  const cluster = await startTestCluster()
  const writer = await cluster.controlPlane()
  try {
    const argv = ['--data-dir', '/unused', '--member-id', 'n', '--block-store', 'store-a', '--mesh-listen', '127.0.0.1:0', '--control-plane', 'kubernetes', '--kubeconfig', cluster.kubeconfigPath]
    const durability = storageNodeDurability(loadConfig(storageNodeConfigSchema, argv, {}))
    assert.ok(durability !== undefined)
    const maps = new PatientClusterMaps({ blockStore: 'store-a', refreshIntervalMs: 60_000 }, { source: await openMapSource(durability, silentLogger()), logger: silentLogger() })
    await maps.start()
    try {
      assert.equal(maps.current().epoch, 0, 'no BlockStore yet: an empty map')
      await writer.createBlockStore({ name: 'store-a', hostPath: '/var/lib/cairn', failureDomainKey: 'kubernetes.io/hostname' })
      await writer.publishClusterMap('store-a', { epoch: 1, members: [{ ...member('a'), meshAddress: '10.0.0.1:7003' }] })
      await maps.refresh()
      assert.equal(maps.current().epoch, 1)
      assert.equal(maps.current().members[0]?.meshAddress, '10.0.0.1:7003')
    } finally {
      await maps.stop()
    }
  } finally {
    await writer.stop()
    await cluster.stop()
  }
})
