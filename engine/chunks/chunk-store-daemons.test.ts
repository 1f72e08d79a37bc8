/**
 * Real faults: six `cairn storage-node` daemons as child processes, two of them
 * SIGKILLed, then a third. The chunk store keeps reading verified data and
 * writing (degraded) through m losses, and fails typed, never wrong, past them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { Registry } from 'prom-client'
import { CodecPool } from '../../core/workers/pool.js'
import { fillSeeded } from '../../core/seeded-random.js'
import { ErasureChunkStore } from './chunk-store.js'
import { daemonMap, killDaemon as kill, startDaemon, type Daemon } from './test-daemons.js'

test('SIGKILLed storage daemons: m lost still read and write, m+1 lost fail with typed errors', async () => {
  const root = await mkdtemp(join(tmpdir(), 'cairn-chunks-daemons-'))
  const daemons = await Promise.all(Array.from({ length: 6 }, (_, i) => startDaemon(join(root, `n${i}`))))
  const map = daemonMap(daemons)
  const pool = new CodecPool({ workers: 1 })
  await pool.start()
  const registry = new Registry()
  const store = new ErasureChunkStore(
    { policy: { dataShards: 4, parityShards: 2, hash: 'sha2-256', chunkSizeBytes: 65536 }, clients: { requestDeadlineMs: 5000 } },
    { maps: { current: () => map }, codec: pool, registry },
  )
  await store.start()
  try {
    const data = Array.from({ length: 24 }, (_, i) => fillSeeded(new Uint8Array(65536), 9000 + i))
    const cids = await store.putChunks(data, 'raw')
    await kill(daemons[1] as Daemon)
    await kill(daemons[4] as Daemon)
    store.clearCache()
    assertSame(await store.getChunks(cids), data)
    const more = Array.from({ length: 6 }, (_, i) => fillSeeded(new Uint8Array(65536), 9100 + i))
    const moreCids = await store.putChunks(more, 'raw')
    const degraded = await registry.getSingleMetric('cairn_engine_chunks_degraded_writes_total')?.get()
    assert.equal(degraded?.values[0]?.value, 6)
    store.clearCache()
    assertSame(await store.getChunks(moreCids), more)

    await kill(daemons[0] as Daemon)
    store.clearCache()
    await assert.rejects(store.getChunks([cids[3] as CID]), (err: Error & { kind?: string }) => {
      assert.equal(err.name, 'ChunkUnavailableError')
      assert.equal(err.kind, 'unavailable')
      return true
    })
    await assert.rejects(store.putChunks([fillSeeded(new Uint8Array(100), 1)], 'raw'), { name: 'ChunkWriteError' })
  } finally {
    await store.stop()
    await pool.stop()
    await Promise.all(daemons.map((d) => kill(d)))
    await rm(root, { recursive: true, force: true })
  }
})

function assertSame(actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  assert.equal(actual.length, expected.length)
  actual.forEach((a, i) => assert.ok(Buffer.from(a).equals(Buffer.from(expected[i] as Uint8Array)), `chunk ${i}`))
}
