import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { CodecPool } from './pool.js'
import { createCodecJobRunner, type CodecJobRunner, type ShardedChunk } from './codec-jobs.js'
import { chunkCid, cidToBytes } from '../cid.js'
import { fillSeeded } from '../seeded-random.js'

function chunkOf(length: number, seed: number): Uint8Array {
  return fillSeeded(new Uint8Array(length), seed)
}

describe('codec worker pool', () => {
  let runner: CodecJobRunner
  let pool: CodecPool
  before(async () => {
    runner = await createCodecJobRunner('ts')
    pool = new CodecPool({ workers: 2 })
    await pool.start()
  })
  after(async () => {
    await pool.stop()
  })

  it('hash+encode results equal the in-thread path, and decode rebuilds odd-length chunks with 2 shards lost', async () => {
    const chunks = [65536, 65535, 1, 0, 12345].map((n, i) => chunkOf(n, i + 1))
    for (const hash of ['sha2-256', 'blake3'] as const) {
      const job = { dataShards: 4, parityShards: 2, hash, chunks }
      const expected = runner.run({ kind: 'encode', ...job })
      const encoded = await pool.encode({ ...job, chunks: chunks.map((c) => c.slice()) }, { transfer: true })
      assert.deepEqual(encoded, expected)
      const sharded: ShardedChunk[] = encoded.map((e) => ({ ...e, shards: e.shards.map((s, i) => (i === 0 || i === 2 ? undefined : s)) }))
      const decoded = await pool.decode({ dataShards: 4, parityShards: 2, chunks: sharded }, { transfer: true })
      assert.deepEqual(decoded, chunks)
    }
  })

  it('transfer: true moves whole input buffers instead of copying them', async () => {
    const chunk = chunkOf(4096, 9)
    await pool.encode({ dataShards: 2, parityShards: 1, chunks: [chunk] }, { transfer: true })
    assert.equal(chunk.byteLength, 0, 'the transferred chunk is detached on this thread')
    const kept = chunkOf(4096, 9)
    await pool.encode({ dataShards: 2, parityShards: 1, chunks: [kept] })
    assert.equal(kept.byteLength, 4096, 'without transfer the caller keeps its bytes')
  })

  it('reports typed errors from workers: tampered shard → ChunkIntegrityError, too few → InsufficientShardsError, bad k → InvalidArgumentError', async () => {
    const chunk = chunkOf(1000, 3)
    const [e] = runner.run({ kind: 'encode', dataShards: 2, parityShards: 1, chunks: [chunk] })
    assert.ok(e)
    const tampered = e.shards.map((s) => s.slice())
    const first = tampered[0] as Uint8Array
    first[5] = (first[5] as number) ^ 0xff
    await assert.rejects(pool.decode({ dataShards: 2, parityShards: 1, chunks: [{ ...e, shards: tampered }] }), { name: 'ChunkIntegrityError' })
    await assert.rejects(pool.decode({ dataShards: 2, parityShards: 1, chunks: [{ ...e, shards: [e.shards[0], undefined, undefined] }] }), { name: 'InsufficientShardsError' })
    await assert.rejects(pool.encode({ dataShards: 0, parityShards: 1, chunks: [chunk] }), { name: 'InvalidArgumentError' })
    assert.deepEqual(cidToBytes(chunkCid(chunk)), e.cid)
  })

  it('never has more than inFlightMax jobs queued or running: further callers wait', async () => {
    const bounded = new CodecPool({ workers: 1, inFlightMax: 2, kernel: 'ts' })
    await bounded.start()
    try {
      const jobs = Array.from({ length: 8 }, (_, i) => bounded.encode({ dataShards: 4, parityShards: 2, chunks: [chunkOf(65536, i + 1)] }))
      await Promise.resolve()
      let maxInFlight = 0
      let sawWaiting = false
      const done = jobs.map((j) =>
        j.then((r) => {
          const s = bounded.stats()
          maxInFlight = Math.max(maxInFlight, s.inFlight)
          sawWaiting ||= s.waiting > 0
          return r
        }),
      )
      const first = bounded.stats()
      assert.equal(first.inFlight, 2)
      assert.equal(first.waiting, 6)
      const results = await Promise.all(done)
      assert.equal(results.length, 8)
      assert.ok(maxInFlight <= 2, `in flight reached ${maxInFlight}`)
      assert.ok(sawWaiting)
      assert.deepEqual(bounded.stats(), { workers: 1, inFlight: 0, queued: 0, waiting: 0, crashes: 0 })
    } finally {
      await bounded.stop()
    }
  })

  it('stop() rejects queued and waiting work with ShuttingDownError, and later calls too', async () => {
    const stopping = new CodecPool({ workers: 1, inFlightMax: 3 })
    await stopping.start()
    const jobs = Array.from({ length: 6 }, (_, i) => stopping.encode({ dataShards: 4, parityShards: 2, chunks: [chunkOf(65536, i + 1)] }))
    const settling = Promise.allSettled(jobs)
    await stopping.stop()
    const settled = await settling
    // The first job may have finished on the worker before it was terminated; the rest never ran.
    for (const s of settled.slice(1)) assert.equal(s.status === 'rejected' && (s.reason as Error).name, 'ShuttingDownError')
    if (settled[0]?.status === 'rejected') assert.equal((settled[0].reason as Error).name, 'ShuttingDownError')
    await assert.rejects(stopping.encode({ dataShards: 1, parityShards: 0, chunks: [new Uint8Array(1)] }), { name: 'ShuttingDownError' })
    await stopping.stop()
  })

  it('a worker crash fails its job with WorkerCrashedError, and a replacement worker serves the next job', async () => {
    const crashing = new CodecPool({ workers: 1, workerUrl: new URL('./crash-worker.fixture.js', import.meta.url) })
    await crashing.start()
    try {
      await assert.rejects(crashing.encode({ dataShards: 1, parityShards: 1, chunks: [Uint8Array.of(0xde, 0xad, 0)] }), { name: 'WorkerCrashedError' })
      assert.equal(crashing.stats().crashes, 1)
      const chunk = chunkOf(777, 5)
      const [r] = await crashing.encode({ dataShards: 3, parityShards: 2, chunks: [chunk] })
      assert.deepEqual(r, runner.run({ kind: 'encode', dataShards: 3, parityShards: 2, chunks: [chunk] })[0])
      assert.equal(crashing.stats().workers, 1)
    } finally {
      await crashing.stop()
    }
  })

  it('small jobs under inlineMaxBytes run on the calling thread with the same results', async () => {
    const inline = new CodecPool({ workers: 1, inlineMaxBytes: 1 << 20 })
    await inline.start()
    try {
      const chunks = [chunkOf(4097, 11)]
      assert.deepEqual(await inline.encode({ dataShards: 8, parityShards: 3, chunks }), runner.run({ kind: 'encode', dataShards: 8, parityShards: 3, chunks }))
      await assert.rejects(new CodecPool({ workers: 1 }).encode({ dataShards: 1, parityShards: 0, chunks }), { name: 'ShuttingDownError' })
    } finally {
      await inline.stop()
    }
  })
})
