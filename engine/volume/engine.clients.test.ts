/** Real NBD clients (libnbd's nbdcopy, qemu-io) against the engine behind the NBD server. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runOk, startTestServer } from '../nbd/testing.js'
import { createEngineHarness } from './testing/harness.js'
import { prng } from './testing/random.js'

test('nbdcopy in and out through the engine round-trips a file, and qemu-io writes 512-byte unaligned blocks', async () => {
  const h = await createEngineHarness({ chunkSizeBytes: 65536 })
  const dir = await mkdtemp(join(tmpdir(), 'cairn-volume-clients-'))
  try {
    const size = 4 * 1024 * 1024
    await h.createVolume('vol', size)
    const engine = await h.attach('vol', 'node-a', { dirtyBytesMax: 1024 * 1024 })
    const server = await startTestServer({ vol: engine })
    try {
      const src = join(dir, 'src.img')
      const out = join(dir, 'out.img')
      const data = Buffer.from(prng(31).bytes(size))
      await writeFile(src, data)
      await runOk('nbdcopy', [src, server.uri('vol')])
      await engine.flushDirty()
      await runOk('nbdcopy', [server.uri('vol'), out])
      assert.ok((await readFile(out)).equals(data))
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1536 512', '-c', 'flush', server.uri('vol')])
      const got = Buffer.from(await engine.pread(1024, 2048))
      const want = Buffer.from(data.subarray(1024, 3072))
      want.fill(0x5a, 512, 1024)
      assert.ok(got.equals(want))
    } finally {
      await server.stop()
    }
  } finally {
    await h.cleanup()
    await rm(dir, { recursive: true, force: true })
  }
})
