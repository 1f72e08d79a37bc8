import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ENGINE_BASELINE_BYTES, ENGINE_DEFAULT_BUDGET_BYTES, engineMemoryBudget } from './memory-budget.js'

const MiB = 1024 * 1024

test('an engine with default settings serving one 4+2 volume is bounded under 464 MiB (512 less allocator slack), whatever the volume size', () => {
  const { items, totalBytes } = engineMemoryBudget({ volumes: 1, dataShards: 4, parityShards: 2 })
  assert.ok(totalBytes <= ENGINE_DEFAULT_BUDGET_BYTES, `default bound ${(totalBytes / MiB).toFixed(0)} MiB: ${items.map((i) => `${i.name} ${(i.bytes / MiB).toFixed(0)}`).join(', ')}`)
  assert.ok(ENGINE_DEFAULT_BUDGET_BYTES <= 464 * MiB)
  assert.equal(items[0]?.bytes, ENGINE_BASELINE_BYTES)
  // The volume's size appears nowhere: every term is a configured bound.
  assert.ok(items.every((i) => Number.isSafeInteger(i.bytes) && i.bytes > 0))
})

test('the accounting follows the settings: per-volume structures scale with volumes, puts and journal copies with the code', () => {
  const settings = { dataShards: 4, parityShards: 2, dirtyBytesMax: 10 * MiB, journalRetainedBytesMax: 5 * MiB, flushBatchChunks: 4, flushBatchesInFlight: 2, chunkSizeBytes: 64 * 1024 }
  const one = engineMemoryBudget({ volumes: 1, ...settings })
  const two = engineMemoryBudget({ volumes: 2, ...settings })
  const perVolume = one.items.filter((i) => !['process baseline', 'chunk cache', 'manifest page cache'].includes(i.name) && !i.name.startsWith('chunk puts'))
  assert.equal(two.totalBytes - one.totalBytes, perVolume.reduce((s, i) => s + i.bytes, 0))
  assert.equal(one.items.find((i) => i.name.startsWith('flusher'))?.bytes, 2 * 2 * 4 * 64 * 1024)
  const replicated = engineMemoryBudget({ volumes: 1, dataShards: 1, parityShards: 2, inFlightPutBytesMax: 8 * MiB, journalWindowBytes: MiB, journalMessageBytesMax: MiB })
  // 1 + 4 × (k+m)/k copies of a put byte; two copies of a message window per journal replica (m+1).
  assert.equal(replicated.items.find((i) => i.name.startsWith('chunk puts'))?.bytes, 8 * MiB * 13)
  assert.equal(replicated.items.find((i) => i.name.startsWith('journal messages'))?.bytes, 3 * 2 * 2 * MiB)
})
