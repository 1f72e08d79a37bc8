import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Libp2p } from 'libp2p'
import type { Stream } from '@libp2p/interface'
import { encodeShard } from '../../core/shard.js'
import { fixtureCid, fixtureShard } from '../fixtures.js'
import { toMultiaddr, toHostPort } from './addresses.js'
import { SHARD_PROTOCOL, decodeError, encodeAddresses, encodeHeader } from './codec.js'
import { FrameReader, frame } from './framing.js'
import { createMeshNode } from './node.js'
import { callGet, callPut } from './shard-client.js'
import { metricValue, startTestMeshCluster, startTestMeshNode, stopTestMeshNodes, waitFor, type TestMeshNode } from './test-cluster.js'

/** A plain libp2p node with its own fresh key that accepts anyone: the stranger, or a hand-driven member. */
async function rawNode(): Promise<{ node: Libp2p; peerId: string; address: () => string; served: () => number }> {
  const privateKey = await generateKeyPair('Ed25519')
  const node = await createMeshNode({ privateKey, listen: '127.0.0.1:0', admit: () => true, dialTimeoutMs: 5000, connectionsMax: 16 })
  let served = 0
  await node.handle(SHARD_PROTOCOL, ({ stream }) => {
    served++
    stream.abort(new Error('the stranger serves nothing'))
  })
  await node.start()
  const address = (): string => node.getMultiaddrs().map(toHostPort).find((a) => a !== undefined)!
  return { node, peerId: peerIdFromPrivateKey(privateKey).toString(), address, served: () => served }
}

const shardCtx = { maxMessageBytes: 1 << 20, onSent: () => undefined, onReceived: () => undefined }

test('a peer with an unknown key can neither fetch nor push shards, and is counted as refused', async () => {
  // No heartbeat tick during the test: the connection gate alone must keep the stranger out.
  const a = await startTestMeshNode('a', { heartbeatIntervalMs: 600_000 })
  const stranger = await rawNode()
  try {
    const held = fixtureShard(7)
    await a.store.putShards([held])
    a.maps.set([a.member()])
    const target = toMultiaddr(a.mesh.listenAddress(), a.mesh.peerId())
    const fetch = async (): Promise<unknown> => callGet(await stranger.node.dialProtocol(target, SHARD_PROTOCOL), [held.header], shardCtx)
    await assert.rejects(fetch(), 'fetch refused')
    const push = async (): Promise<void> => callPut(await stranger.node.dialProtocol(target, SHARD_PROTOCOL), [fixtureShard(8)], shardCtx)
    await assert.rejects(push(), 'push refused')
    assert.equal((await a.store.stats()).shardCount, 1, 'nothing was stored')
    assert.ok((await metricValue(a.registry, 'cairn_mesh_refused_connections_total', { direction: 'inbound' })) >= 1)
    assert.equal(await metricValue(a.registry, 'cairn_mesh_served_requests_total', { method: 'get', outcome: 'ok' }), 0)
  } finally {
    await stranger.node.stop()
    await stopTestMeshNodes([a])
  }
})

test('dialing a member whose address answers with another key is refused and counted (outbound)', async () => {
  const a = await startTestMeshNode('a')
  const stranger = await rawNode()
  try {
    const expected = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    a.maps.set([a.member(), { ...a.member(), id: 'c', peerId: expected, meshAddress: stranger.address(), failureDomain: 'c' }])
    await assert.rejects(a.mesh.get('c', [fixtureShard(1).header]), { name: 'MeshUnavailableError' })
    await assert.rejects(a.mesh.put('c', [fixtureShard(1)]), { name: 'MeshUnavailableError' })
    assert.equal(stranger.served(), 0, 'the impostor never saw a request')
    assert.ok((await metricValue(a.registry, 'cairn_mesh_refused_connections_total', { direction: 'outbound' })) >= 1)
  } finally {
    await stranger.node.stop()
    await stopTestMeshNodes([a])
  }
})

test('a member removed from the map is refused from then on, on connections it already had', async () => {
  const nodes = await startTestMeshCluster(['a', 'b'])
  try {
    const [a, b] = nodes as [TestMeshNode, TestMeshNode]
    const shard = fixtureShard(3)
    await b.mesh.put('a', [shard])
    assert.deepEqual(await b.mesh.has('a', [shard.header]), [true], 'b is a member: served')
    const refusedBefore = await metricValue(a.registry, 'cairn_mesh_refused_connections_total', { direction: 'inbound' })
    a.maps.set([a.member()])
    // b still lists a, so b keeps calling; a must refuse on the open connection and on new ones.
    await assert.rejects(b.mesh.has('a', [shard.header]), 'removed member refused')
    await assert.rejects(b.mesh.put('a', [fixtureShard(4)]), 'removed member cannot push')
    assert.equal((await a.store.stats()).shardCount, 1)
    await assert.rejects(a.mesh.has('b', [shard.header]), { name: 'MeshUnavailableError' })
    assert.ok((await metricValue(a.registry, 'cairn_mesh_refused_connections_total', { direction: 'inbound' })) > refusedBefore)
  } finally {
    await stopTestMeshNodes(nodes)
  }
})

/** Opens a shard stream from a hand-driven member to `a`, sends `bytes` as they are, and returns the first response frame. */
async function rawRequest(raw: Libp2p, a: TestMeshNode, bytes: Uint8Array[]): Promise<Uint8Array | undefined> {
  const stream: Stream = await raw.dialProtocol(toMultiaddr(a.mesh.listenAddress(), a.mesh.peerId()), SHARD_PROTOCOL)
  await stream.sink(bytes)
  const reply = await new FrameReader(stream.source, 1 << 20).next()
  await stream.close().catch(() => undefined)
  return reply
}

test('oversize and malformed frames from a member get a typed error and a closed stream, and the node serves on', async () => {
  const a = await startTestMeshNode('a', { maxMessageBytes: 64 * 1024 })
  const raw = await rawNode()
  const b = await startTestMeshNode('b')
  try {
    const asMember = (id: string, peerId: string, meshAddress: string): ReturnType<TestMeshNode['member']> => ({ ...a.member(), id, peerId, meshAddress, failureDomain: id })
    const members = [a.member(), b.member(), asMember('raw', raw.peerId, raw.address())]
    a.maps.set(members)
    b.maps.set(members)
    const errorName = (reply: Uint8Array | undefined): string => decodeError(reply!).name
    const prefix = (length: number): Uint8Array => Buffer.from([length >>> 24, (length >>> 16) & 255, (length >>> 8) & 255, length & 255])

    assert.equal(errorName(await rawRequest(raw.node, a, [prefix(0xffffffff)])), 'MeshMessageTooLargeError')
    assert.equal(errorName(await rawRequest(raw.node, a, [prefix(64 * 1024 + 1)])), 'MeshMessageTooLargeError')
    assert.equal(errorName(await rawRequest(raw.node, a, frame(Buffer.from([9, 1, 0, 0, 0, 1])))), 'MeshProtocolError', 'unknown version')
    assert.equal(errorName(await rawRequest(raw.node, a, frame(Buffer.from([1, 77, 0, 0, 0, 1])))), 'MeshProtocolError', 'unknown op')
    assert.equal(errorName(await rawRequest(raw.node, a, [prefix(100), Buffer.alloc(10)])), 'MeshProtocolError', 'truncated frame')
    assert.equal(errorName(await rawRequest(raw.node, a, [prefix(0)])), 'MeshProtocolError', 'empty frame')
    const oneAddress = encodeAddresses([{ chunkCid: fixtureCid('x'), index: 0 }])
    const countMismatch = [...frame(encodeHeader({ op: 'has', count: 2 })), ...frame(oneAddress)]
    assert.equal(errorName(await rawRequest(raw.node, a, countMismatch)), 'MeshProtocolError', 'count mismatch')

    const good = encodeShard({ chunkCid: fixtureCid('y'), k: 2, m: 1, index: 0, chunkLengthBytes: 64, payload: new Uint8Array(32).fill(5) })
    const flipped = good.bytes.slice()
    flipped[flipped.length - 1]! ^= 0x01
    const badPut = [...frame(encodeHeader({ op: 'put', count: 1 })), ...frame(flipped)]
    assert.equal(errorName(await rawRequest(raw.node, a, badPut)), 'ShardCorruptError', 'a shard damaged in flight is refused')
    assert.equal((await a.store.stats()).shardCount, 0, 'nothing of a refused put is stored')

    const shard = fixtureShard(11)
    await b.mesh.put('a', [shard])
    assert.deepEqual(await b.mesh.has('a', [shard.header]), [true], 'the node still serves well-formed requests')
    assert.ok((await metricValue(a.registry, 'cairn_mesh_served_requests_total', { method: 'unknown', outcome: 'invalid-argument' })) >= 3)
  } finally {
    await raw.node.stop()
    await stopTestMeshNodes([a, b])
  }
})

test('a member over its concurrent-request limit is refused with ResourceExhaustedError while its first request still runs', async () => {
  const a = await startTestMeshNode('a', { streamsPerPeerMax: 1 })
  const raw = await rawNode()
  try {
    a.maps.set([a.member(), { ...a.member(), id: 'raw', peerId: raw.peerId, meshAddress: raw.address(), failureDomain: 'raw' }])
    const target = toMultiaddr(a.mesh.listenAddress(), a.mesh.peerId())
    // The first request sends its header and then stalls, holding the only slot.
    const stalled = await raw.node.dialProtocol(target, SHARD_PROTOCOL)
    const writes: { release?: () => void } = {}
    const held = new Promise<void>((resolve) => (writes.release = resolve))
    const sinking = stalled.sink((async function* () {
      yield* frame(encodeHeader({ op: 'has', count: 1 }))
      await held
    })())
    await waitFor('the first request to be served', async () => (await metricValue(a.registry, 'cairn_mesh_received_bytes_total', { protocol: 'shards' })) > 0)
    const reply = await rawRequest(raw.node, a, [...frame(encodeHeader({ op: 'has', count: 1 })), ...frame(encodeAddresses([fixtureShard(1).header]))])
    assert.equal(decodeError(reply!).name, 'ResourceExhaustedError')
    writes.release!()
    await sinking
    stalled.abort(new Error('done'))
  } finally {
    await raw.node.stop()
    await stopTestMeshNodes([a])
  }
})
