// Cluster-token authentication of a real storage node over gRPC: calls without
// or with a wrong token fail with UnauthenticatedError and change nothing; the
// right token works; a node refuses to serve the network without a token.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { assertTokenOrLoopback, isLoopbackListen, loadClusterToken, tokenVerifier } from './auth.js'
import { StorageNode, type StorageNodeInit } from './daemon.js'
import { fixtureShard, loopbackNodeInit } from './fixtures.js'
import { JournalClient } from './journal/journal-client.js'
import { ShardClient } from './shard-client.js'

const TOKEN = 'cluster-token-0123456789abcdefghij'

function nodeInit(dataDir: string, extra: Partial<StorageNodeInit> = {}): StorageNodeInit {
  return loopbackNodeInit(dataDir, { maxInFlightRequests: 16, ...extra })
}

async function rejects(what: Promise<unknown>, name: string): Promise<void> {
  await assert.rejects(what, (err: Error) => {
    assert.equal(err.name, name)
    return true
  })
}

describe('storage node with a cluster token', () => {
  let dir: string
  let node: StorageNode
  const registry = new Registry()
  const clients: Array<{ close(): void }> = []
  const shardClient = (token?: string): ShardClient => {
    const c = new ShardClient({ address: node.grpcAddress(), deadlineMs: 5000, ...(token === undefined ? {} : { token }) })
    clients.push(c)
    return c
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-auth-'))
    node = new StorageNode(nodeInit(dir, { clusterToken: TOKEN }), { logger: silentLogger(), registry })
    await node.start()
  })

  after(async () => {
    for (const c of clients) c.close()
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses every ShardService call without a token or with a wrong one, and leaves stored data untouched', async () => {
    const good = shardClient(TOKEN)
    const stored = fixtureShard(1, 0)
    assert.equal((await good.putShards([stored])).writtenCount, 1)

    for (const client of [shardClient(), shardClient(`${TOKEN}x`), shardClient('Bearer-looking-but-wrong-token')]) {
      await rejects(client.putShards([fixtureShard(2, 0)]), 'UnauthenticatedError')
      await rejects(client.deleteShards([stored.header]), 'UnauthenticatedError')
      await rejects(client.getShard(stored.header), 'UnauthenticatedError')
      await rejects(client.getShards([stored.header]), 'UnauthenticatedError')
      await rejects(client.stats(), 'UnauthenticatedError')
    }

    const back = await good.getShard(stored.header)
    assert.ok(Buffer.from(back.bytes).equals(Buffer.from(stored.bytes)), 'the stored shard is unchanged')
    assert.deepEqual(await good.hasShards([fixtureShard(2, 0).header]), [false], 'the refused put stored nothing')
    assert.equal((await good.stats()).shardCount, 1)
    assert.match(await registry.metrics(), /^cairn_storage_node_unauthenticated_requests_total 15$/m, 'each refusal is counted')
  })

  it('refuses JournalService calls without the token and serves them with it', async () => {
    const anonymous = new JournalClient({ address: node.grpcAddress(), deadlineMs: 5000, streamDeadlineMs: 5000 })
    const authed = new JournalClient({ address: node.grpcAddress(), deadlineMs: 5000, streamDeadlineMs: 5000, token: TOKEN })
    clients.push(anonymous, authed)
    await rejects(anonymous.open('vol-auth', 1), 'UnauthenticatedError')
    await rejects(anonymous.drop('vol-auth', 1), 'UnauthenticatedError')
    const opened = await authed.open('vol-auth', 1)
    assert.equal(opened.lastSeq, 0)
    assert.deepEqual(opened.records, [])
  })
})

describe('cluster token configuration', () => {
  it('refuses to start beyond loopback without a token, before opening the data dir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-auth-'))
    try {
      const node = new StorageNode(nodeInit(join(dir, 'data'), { listen: '0.0.0.0:0' }), { logger: silentLogger(), registry: new Registry() })
      await rejects(node.start(), 'ClusterTokenRequiredError')
      await node.stop()
      await assert.rejects(stat(join(dir, 'data')), { code: 'ENOENT' }, 'nothing was created')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('tells loopback listen addresses from others', () => {
    const table: Array<[string, boolean]> = [
      ['127.0.0.1:7700', true],
      ['127.8.9.10:0', true],
      ['localhost:7700', true],
      ['[::1]:7700', true],
      ['0.0.0.0:7700', false],
      ['[::]:7700', false],
      ['10.0.0.1:7700', false],
      ['node-1.cluster:7700', false],
      ['128.0.0.1:7700', false],
    ]
    for (const [listen, loopback] of table) assert.equal(isLoopbackListen(listen), loopback, listen)
    assert.throws(() => assertTokenOrLoopback('0.0.0.0:7700', undefined), { name: 'ClusterTokenRequiredError' })
    assertTokenOrLoopback('0.0.0.0:7700', TOKEN)
    assertTokenOrLoopback('127.0.0.1:7700', undefined)
  })

  it('reads the token from a file (a mounted Secret, trailing newline dropped) or the flag, never both, never too short', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-auth-'))
    try {
      const file = join(dir, 'token')
      await writeFile(file, `${TOKEN}\n`)
      assert.equal(await loadClusterToken({ clusterTokenFile: file }), TOKEN)
      assert.equal(await loadClusterToken({ clusterToken: TOKEN }), TOKEN)
      assert.equal(await loadClusterToken({}), undefined)
      await rejects(loadClusterToken({ clusterToken: TOKEN, clusterTokenFile: file }), 'ConfigError')
      await rejects(loadClusterToken({ clusterToken: 'short' }), 'ConfigError')
      await rejects(loadClusterToken({ clusterTokenFile: join(dir, 'missing') }), 'ConfigError')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('accepts exactly `Bearer <token>`', () => {
    const verify = tokenVerifier(TOKEN)
    assert.equal(verify(`Bearer ${TOKEN}`), true)
    for (const bad of [undefined, '', TOKEN, `bearer ${TOKEN}`, `Bearer ${TOKEN} `, `Bearer ${TOKEN.slice(1)}`, 'Bearer ']) assert.equal(verify(bad), false, String(bad))
  })
})
