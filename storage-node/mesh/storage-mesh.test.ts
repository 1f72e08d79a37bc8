import { test } from 'node:test'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'
import type { Shard } from '../../core/shard.js'
import { createSegmentShardStore } from '../segment-store.js'
import { silentLogger } from '../../core/logger.js'
import { fixtureShard } from '../fixtures.js'
import { writeFile } from 'node:fs/promises'
import { Registry } from 'prom-client'
import { StorageMesh } from './storage-mesh.js'
import { identityPath } from './identity.js'
import { metricValue, startTestMeshCluster, startTestMeshNode, stopTestMeshNodes, waitFor, type TestMeshNode } from './test-cluster.js'

test('has, get and put round-trip between two members, batches larger than one request included', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'])
  try {
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    // 300 shards: more than one request carries (TRANSFER_COUNT_MAX), so the call is split.
    const shards: Shard[] = Array.from({ length: 300 }, (_, i) => fixtureShard(i, i % 6, 256))
    const missing = fixtureShard(10_000, 0)
    await a.mesh.put('b', shards)
    assert.equal((await b.store.stats()).shardCount, 300, 'every shard landed in the remote store')
    assert.deepEqual(await a.mesh.has('b', [shards[0]!.header, missing.header, shards[299]!.header]), [true, false, true])
    const got = await a.mesh.get('b', [...shards.map((s) => s.header), missing.header])
    assert.equal(got.length, 301)
    for (const [i, s] of shards.entries()) {
      const r = got[i]!
      assert.ok(r.ok, `shard ${i} fetched`)
      assert.ok(Buffer.from(r.shard.bytes).equals(Buffer.from(s.bytes)), `shard ${i} bytes identical`)
    }
    const last = got[300]!
    assert.ok(!last.ok)
    assert.equal(last.error.name, 'ShardNotFoundError', 'a missing shard is its own typed error; the others still arrive')
    assert.deepEqual(await b.mesh.has('a', [shards[0]!.header]), [false], 'the other direction works too')
    assert.ok((await metricValue(a.registry, 'cairn_mesh_sent_bytes_total', { protocol: 'shards' })) > 300 * 256)
    assert.ok((await metricValue(b.registry, 'cairn_mesh_received_bytes_total', { protocol: 'shards' })) > 300 * 256)
    assert.equal(await metricValue(a.registry, 'cairn_mesh_calls_total', { method: 'put', outcome: 'ok' }), 2)
    assert.equal(await metricValue(a.registry, 'cairn_mesh_calls_total', { method: 'get', outcome: 'ok' }), 2)
    assert.ok((await metricValue(b.registry, 'cairn_mesh_served_requests_total', { method: 'put', outcome: 'ok' })) >= 2)
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

test('a put is durable once acknowledged: the receiving store reopened from disk still holds the shard', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'])
  try {
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    const shard = fixtureShard(42, 3, 4096)
    await a.mesh.put('b', [shard])
    await b.mesh.stop()
    await b.store.stop()
    const reopened = createSegmentShardStore({ dataDir: b.dir, compactionIntervalMs: 0 }, { logger: silentLogger() })
    await reopened.start()
    try {
      const back = await reopened.getShard(shard.header)
      assert.ok(Buffer.from(back.bytes).equals(Buffer.from(shard.bytes)))
    } finally {
      await reopened.stop()
    }
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

test('the peer id survives a restart of the mesh on the same data dir', async () => {
  const node = await startTestMeshNode('a')
  try {
    const first = node.mesh.peerId()
    await node.mesh.stop()
    const again = new StorageMesh({ dataDir: node.dir, listen: '127.0.0.1:0' }, {
      memberId: 'a', maps: node.maps, store: node.store, logger: silentLogger(), registry: new Registry(),
    })
    await again.start()
    try {
      assert.equal(again.peerId(), first)
      assert.match(again.listenAddress(), /^127\.0\.0\.1:\d+$/)
    } finally {
      await again.stop()
    }
    await writeFile(identityPath(node.dir), Buffer.from('corrupt'))
    const broken = new StorageMesh({ dataDir: node.dir, listen: '127.0.0.1:0' }, {
      memberId: 'a', maps: node.maps, store: node.store, logger: silentLogger(), registry: new Registry(),
    })
    await assert.rejects(broken.start(), { name: 'PeerIdentityError' }, 'a corrupt identity stops the mesh from starting')
    await broken.stop()
  } finally {
    await stopTestMeshNodes([node])
  }
})

test('heartbeats reuse one stream per member; a member restarted on the same address gets a fresh one', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'], { heartbeatIntervalMs: 50, aliveWindowMs: 3000 })
  const [a, b] = nodes as [TestMeshNode, TestMeshNode]
  let restarted: StorageMesh | undefined
  try {
    const beats = (): Promise<number> => metricValue(a.registry, 'cairn_mesh_heartbeat_rtt_seconds_count')
    await waitFor('ten answered heartbeats', async () => (await beats()) >= 10)
    assert.equal(await metricValue(a.registry, 'cairn_mesh_heartbeat_streams_opened_total'), 1, 'ten heartbeats on one stream')
    const address = b.member().meshAddress as string
    await b.mesh.stop()
    restarted = new StorageMesh(
      { dataDir: b.dir, listen: address, heartbeatIntervalMs: 50, aliveWindowMs: 3000 },
      { memberId: 'b', maps: b.maps, store: b.store, logger: silentLogger(), registry: new Registry() },
    )
    await restarted.start()
    const before = await beats()
    await waitFor('heartbeats answered by the restarted member', async () => (await beats()) >= before + 10)
    assert.equal(a.mesh.isAlive('b'), true)
    assert.equal(await metricValue(a.registry, 'cairn_mesh_heartbeat_streams_opened_total'), 2, 'the broken stream was replaced once')
  } finally {
    await restarted?.stop()
    await stopTestMeshNodes(nodes)
  }
})

test('a process whose meshes stopped exits on its own: stop() ends the heartbeat streams it serves', async () => {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./mesh-exit.fixture.js', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  // Far below the fixture's 60 s call timeout, far above a clean exit (about a second).
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  try {
    const code = await exited
    assert.match(out, /stopped/, 'the meshes stopped')
    assert.equal(code, 0, 'exited by itself after stop(), not killed 20 s later')
  } finally {
    clearTimeout(timer)
  }
})

test('liveness: members see each other alive through heartbeats, and a stopped member goes silent', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'], { heartbeatIntervalMs: 100, aliveWindowMs: 1500 })
  try {
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    assert.equal(a.mesh.isAlive('a'), true, 'a node is always alive to itself')
    assert.equal(a.mesh.silentForMs('a'), 0)
    await waitFor('a to see b alive', () => a.mesh.isAlive('b'))
    await waitFor('b to see a alive', () => b.mesh.isAlive('a'))
    assert.equal(await metricValue(a.registry, 'cairn_mesh_peer_up', { member: 'b' }), 1)
    assert.ok((await metricValue(a.registry, 'cairn_mesh_heartbeat_rtt_seconds_count')) >= 1)
    await b.mesh.stop()
    await waitFor('a to see b silent', () => !a.mesh.isAlive('b'))
    assert.ok((a.mesh.silentForMs('b') ?? 0) > 1500, 'silent for longer than the alive window')
    await waitFor('peer_up to drop', async () => (await metricValue(a.registry, 'cairn_mesh_peer_up', { member: 'b' })) === 0)
    assert.equal(a.mesh.isAlive('nobody'), false, 'a member not in the map is never alive')
    assert.equal(a.mesh.silentForMs('nobody'), undefined)
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

test('calls to a member that is not in the map, or has no mesh address, fail with a typed unavailable error', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'])
  try {
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    const shard = fixtureShard(1)
    await assert.rejects(a.mesh.has('zed', [shard.header]), { name: 'MeshUnavailableError' })
    const { meshAddress: _drop, ...noMesh } = b.member()
    a.maps.set([a.member(), noMesh])
    await assert.rejects(a.mesh.put('b', [shard]), { name: 'MeshUnavailableError' })
    assert.equal((await b.store.stats()).shardCount, 0)
    assert.ok((await metricValue(a.registry, 'cairn_mesh_calls_total', { method: 'put', outcome: 'unavailable' })) >= 1)
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

test('a call to a stopped member fails within its timeout with a typed error', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'], { callTimeoutMs: 3000 })
  try {
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    await b.mesh.stop()
    await assert.rejects(a.mesh.get('b', [fixtureShard(1).header]), { name: 'MeshUnavailableError' })
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(a.mesh.has('b', [fixtureShard(1).header], { signal: controller.signal }), { name: 'MeshUnavailableError' })
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

test('a shard larger than maxMessageBytes is refused before it is sent', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'], { maxMessageBytes: 64 * 1024 })
  try {
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    await assert.rejects(a.mesh.put('b', [fixtureShard(1, 0, 128 * 1024)]), { name: 'MeshMessageTooLargeError' })
    // Many shards that together exceed the limit are split into several requests instead.
    const shards = Array.from({ length: 8 }, (_, i) => fixtureShard(i, 0, 30 * 1024))
    await a.mesh.put('b', shards)
    assert.equal((await b.store.stats()).shardCount, 8)
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

test('stop releases every socket: no TCP handle outlives the meshes', async () => {
  const tcpHandles = (): number => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length
  const before = tcpHandles()
  const nodes = await startTestMeshCluster(['a', 'b', 'c'])
  const [a] = nodes as [typeof nodes[0]]
  await a.mesh.put('b', [fixtureShard(1)])
  await waitFor('heartbeats between all members', () => nodes.every((n) => nodes.every((m) => n.mesh.isAlive(m.id))))
  assert.ok(tcpHandles() > before, 'the meshes hold sockets while running')
  await stopTestMeshNodes(nodes)
  await waitFor('every mesh socket to close', () => tcpHandles() <= before)
  await assert.rejects(a.mesh.has('b', [fixtureShard(1).header]), { name: 'ShuttingDownError' }, 'a stopped mesh refuses calls')
})
