import { test } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger } from '../../core/logger.js'
import { JournalStore } from './journal-store.js'
import { withTempDir } from './testing.js'

test('first uses of one volume that race share one VolumeLog: two would append to the same files', async () => {
  await withTempDir('cairn-journal-store-', async (dir) => {
    const store = new JournalStore({ dir, maxOpenVolumes: 4 }, { logger: silentLogger() })
    await store.start()
    try {
      const [a, b, c] = await Promise.all([store.acquire('vol-race'), store.acquire('vol-race'), store.acquire('vol-race')])
      assert.equal(a, b)
      assert.equal(a, c)
      assert.equal(a.refs, 3)
      for (const log of [a, b, c]) store.release(log)
    } finally {
      await store.stop()
    }
  })
})
