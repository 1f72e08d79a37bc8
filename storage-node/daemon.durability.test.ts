/**
 * The storage node with its durability services (mesh, scrub, repair) wired in:
 * two in-process nodes on loopback with real stores, a fixed cluster map, and the
 * Stats RPC reporting what each service counts.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ClusterMap, ClusterMember } from '../core/cluster-map.js'
import { createRegistry } from '../core/health-server.js'
import { silentLogger } from '../core/logger.js'
import { StorageNode } from './daemon.js'
import { loopbackNodeInit } from './fixtures.js'
import { loadOrCreatePeerIdentity } from './mesh/index.js'
import { ShardClient } from './shard-client.js'
import type { NodeStats } from './shard-store.js'

const durability = (memberId: string) => ({
  memberId,
  meshListen: '127.0.0.1:0',
  heartbeatIntervalMs: 100,
  scrubBytesPerSecond: 1024 * 1024,
  scrubIntervalMs: 60_000,
  repairBandwidthBytesPerSecond: 1024 * 1024,
  repairIntervalMs: 60_000,
})

function member(id: string, peerId: string, meshAddress: string | undefined, state: ClusterMember['state'] = 'active'): ClusterMember {
  return { id, address: '127.0.0.1:1', peerId, ...(meshAddress === undefined ? {} : { meshAddress }), failureDomain: id, weight: 1, state }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

test('with durability the node runs the mesh, reports its peer id, scrub and repair counters in Stats, and sees a peer once the map lists it', async () => {
  const dirs = [await mkdtemp(join(tmpdir(), 'cairn-dur-a-')), await mkdtemp(join(tmpdir(), 'cairn-dur-b-'))]
  // The map starts empty: a node starts before any map names it.
  let map: ClusterMap = { epoch: 0, members: [] }
  const maps = { current: () => map }
  const nodes = dirs.map(
    (dir, i) => new StorageNode({ ...loopbackNodeInit(dir), durability: durability(`node-${i}`) }, { logger: silentLogger(), registry: createRegistry({ component: 'test' }), maps }),
  )
  const clients: ShardClient[] = []
  try {
    for (const node of nodes) await node.start()
    const [a, b] = nodes as [StorageNode, StorageNode]
    const ids = await Promise.all(dirs.map(async (dir) => (await loadOrCreatePeerIdentity(dir)).peerId))
    for (const [i, node] of nodes.entries()) {
      const client = new ShardClient({ address: node.grpcAddress() })
      clients.push(client)
      const stats = (await client.stats()) as NodeStats
      assert.equal(stats.peerId, ids[i], 'Stats reports the identity kept in the data directory')
      // An empty store: nothing scrubbed or repaired yet, whether or not a first pass already ran.
      assert.equal(stats.scrub?.scrubbedShards, 0)
      assert.equal(stats.repair?.repairedShards, 0)
    }
    const meshOf = (node: StorageNode): string => node.meshAddress() as string
    map = { epoch: 1, members: [member('node-0', ids[0] as string, meshOf(a)), member('node-1', ids[1] as string, meshOf(b))] }
    await waitFor(() => a.liveness()?.isAlive('node-1') === true && b.liveness()?.isAlive('node-0') === true, 'heartbeats both ways')
  } finally {
    for (const client of clients) client.close()
    for (const node of nodes) await node.stop()
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  }
})

test('without durability the node is a plain shard server: no peer id, scrub or repair in Stats', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-dur-plain-'))
  const node = new StorageNode(loopbackNodeInit(dir), { logger: silentLogger(), registry: createRegistry({ component: 'test' }) })
  await node.start()
  const client = new ShardClient({ address: node.grpcAddress() })
  try {
    const stats = (await client.stats()) as NodeStats
    assert.ok(stats.peerId === undefined || stats.peerId === '')
    assert.ok(stats.scrub === undefined || stats.scrub === null)
    assert.ok(stats.repair === undefined || stats.repair === null)
    assert.equal(node.meshAddress(), undefined)
  } finally {
    client.close()
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('durability without a cluster-map provider is refused with ConfigError', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-dur-nomaps-'))
  try {
    assert.throws(() => new StorageNode({ ...loopbackNodeInit(dir), durability: durability('node-0') }, { logger: silentLogger(), registry: createRegistry({ component: 'test' }) }), { name: 'ConfigError' })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
