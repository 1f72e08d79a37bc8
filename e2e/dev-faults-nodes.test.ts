/**
 * Storage nodes SIGKILLed during I/O against `cairn dev`: with m down, reads and
 * writes go on; with m+1 down, clear I/O errors and never wrong data. dev keeps a
 * killed node down (its fault API) until the test starts it again.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { run, runOk } from '../engine/nbd/testing.js'
import { Dev, MiB, checkRegion, counts, fault, nbdshEnv, writeRegion } from './harness.js'

async function nbdsh(uri: string, code: string, timeoutMs = 120_000): Promise<string> {
  return runOk('nbdsh', ['-u', uri, '-c', code], timeoutMs, nbdshEnv)
}

describe('cairn dev with storage nodes killed', () => {
  let dev: Dev

  before(async () => {
    dev = await Dev.start({ size: '512MiB' })
  })
  after(async () => {
    await dev?.destroy()
  })

  test('SIGKILL of m storage nodes during I/O: reads and writes go on; m+1: I/O errors, never wrong data', async () => {
    const base = 64 * MiB
    const mib = 72 // more than the engine's chunk cache, so reads reach the shards
    await nbdsh(dev.uri, writeRegion(41, base, mib))
    assert.equal((await dev.cli(['snapshot', 'create', 'before-node-kill', '--volume', 'demo'])).code, 0)
    const writer = run('nbdsh', ['-u', dev.uri, '-c', writeRegion(42, 192 * MiB, 16)], 120_000, nbdshEnv)
    try {
      await fault(dev, 'node-0', 'kill')
      await fault(dev, 'node-1', 'kill')
      const w = await writer
      assert.equal(w.code, 0, `writes go on with m nodes down: ${w.stdout}${w.stderr}`)
      assert.deepEqual(counts(await nbdsh(dev.uri, checkRegion(41, base, mib))), { ok: mib, err: 0, bad: 0 }, 'reads go on with m nodes down')
      assert.deepEqual(counts(await nbdsh(dev.uri, checkRegion(42, 192 * MiB, 16))), { ok: 16, err: 0, bad: 0 })
      await fault(dev, 'node-2', 'kill')
      // m+1 down: fewer than k shards of any chunk remain; only cached chunks can still be read.
      const degraded = counts(await nbdsh(dev.uri, checkRegion(41, base, mib)))
      assert.equal(degraded.bad, 0, 'never wrong data')
      assert.ok(degraded.err > 0, 'clear I/O errors')
    } finally {
      for (const n of ['node-0', 'node-1', 'node-2']) await fault(dev, n, 'start')
    }
    // Nodes back: a fresh engine (no cache, fresh connections) reads everything right.
    await dev.killEngine()
    assert.deepEqual(counts(await nbdsh(dev.uri, checkRegion(41, base, mib))), { ok: mib, err: 0, bad: 0 })
    assert.deepEqual(counts(await nbdsh(dev.uri, checkRegion(42, 192 * MiB, 16))), { ok: 16, err: 0, bad: 0 })
  })
})
