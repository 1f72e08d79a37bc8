/**
 * A storage node that was down for a while and comes back is used again within
 * about a second: the clients' reconnect backoff is capped (core/grpc.ts), instead
 * of grpc-js's default that grows to minutes and left reads failing ~20 s after
 * the node returned.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { CodecPool } from '../../core/workers/pool.js'
import { StorageNode } from '../../storage-node/daemon.js'
import { fillSeeded } from '../../core/seeded-random.js'
import { loopbackNodeInit } from '../../storage-node/fixtures.js'
import { ErasureChunkStore } from './chunk-store.js'

const CHUNK_BYTES = 16 * 1024
/** Longer than grpc-js's default backoff needs to grow past the wait bound below (1 s, 1.6 s, 2.6 s, 4.1 s, 6.6 s, 10.5 s, ...). */
const DOWN_MS = 20_000
const RECONNECT_WAIT_MS = 3000

async function startNode(dataDir: string, listen: string): Promise<StorageNode> {
  const node = new StorageNode(loopbackNodeInit(dataDir, { listen, shutdownGraceMs: 200 }), { logger: silentLogger(), registry: new Registry() })
  await node.start()
  return node
}

test('a read succeeds within a few seconds after a storage node that was down for a while returns', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-reconnect-'))
  const pool = new CodecPool({ workers: 1 })
  await pool.start()
  let node = await startNode(dir, '127.0.0.1:0')
  const address = node.grpcAddress()
  const map = { epoch: 1, members: [{ id: 'n0', address, peerId: 'p0', failureDomain: 'd0', weight: 1, state: 'active' as const }] }
  const store = new ErasureChunkStore(
    { policy: { dataShards: 1, parityShards: 0, hash: 'sha2-256', chunkSizeBytes: CHUNK_BYTES }, cacheMaxBytes: 1, clients: { requestDeadlineMs: 2000 } },
    { maps: { current: () => map }, codec: pool, registry: new Registry() },
  )
  await store.start()
  try {
    const data = new Uint8Array(CHUNK_BYTES)
    fillSeeded(data, 5)
    const [cid] = await store.putChunks([data], 'raw')
    assert.ok(cid !== undefined)
    await node.stop()
    // Reads fail while the node is down; each failure lets the channel's backoff grow.
    const downUntil = Date.now() + DOWN_MS
    let failures = 0
    while (Date.now() < downUntil) {
      await assert.rejects(store.getChunks([cid]), { name: 'ChunkUnavailableError' })
      failures++
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    assert.ok(failures > 0)
    node = await startNode(dir, address)
    const back = Date.now()
    let got: Uint8Array | undefined
    while (got === undefined) {
      got = await store.getChunks([cid]).then(([c]) => c, () => undefined)
      if (got === undefined) {
        assert.ok(Date.now() - back < RECONNECT_WAIT_MS, `no read succeeded within ${RECONNECT_WAIT_MS} ms of the node's return`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    assert.ok(Buffer.from(got).equals(Buffer.from(data)))
  } finally {
    await store.stop()
    await pool.stop()
    await node.stop().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
})
