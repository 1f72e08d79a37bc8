import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ENGINE_BASELINE_BYTES, engineMemoryBudget } from './memory-budget.js'

const MiB = 1024 * 1024

test('an engine with default settings serving one 4+2 volume is bounded under 512 MiB, whatever the volume size', () => {
  const { items, totalBytes } = engineMemoryBudget({ volumes: 1, dataShards: 4, parityShards: 2 })
  assert.ok(totalBytes < 512 * MiB, `default bound ${(totalBytes / MiB).toFixed(0)} MiB: ${items.map((i) => `${i.name} ${(i.bytes / MiB).toFixed(0)}`).join(', ')}`)
  assert.equal(items[0]?.bytes, ENGINE_BASELINE_BYTES)
  // The volume's size appears nowhere: every term is a configured bound.
  assert.ok(items.every((i) => Number.isSafeInteger(i.bytes) && i.bytes > 0))
})

test('the accounting follows the settings: per-volume structures scale with volumes, puts with the code rate', () => {
  const one = engineMemoryBudget({ volumes: 1, dataShards: 4, parityShards: 2, dirtyBytesMax: 10 * MiB, journalRetainedBytesMax: 5 * MiB, flushComposeBytes: MiB })
  const two = engineMemoryBudget({ volumes: 2, dataShards: 4, parityShards: 2, dirtyBytesMax: 10 * MiB, journalRetainedBytesMax: 5 * MiB, flushComposeBytes: MiB })
  assert.equal(two.totalBytes - one.totalBytes, 16 * MiB)
  const replicated = engineMemoryBudget({ volumes: 1, dataShards: 1, parityShards: 2, inFlightPutBytesMax: 8 * MiB })
  assert.equal(replicated.items.find((i) => i.name.startsWith('chunk puts'))?.bytes, 8 * MiB * 4)
})
