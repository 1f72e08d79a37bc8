import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backendConformance } from './backend-conformance.js'
import { MemoryBackend } from './memory-backend.js'

const MiB = 1024 * 1024

backendConformance('MemoryBackend', () => new MemoryBackend({ sizeBytes: 4 * MiB + 3 }))

test('MemoryBackend allocates pages on write and frees them on trim and zero', async () => {
  const b = new MemoryBackend({ sizeBytes: MiB, pageSizeBytes: 4096 })
  await b.pwrite(4096, Buffer.alloc(8192, 1), { fua: false })
  assert.equal(b.allocatedBytes, 8192)
  await b.trim(4096, 4096, { fua: false })
  assert.equal(b.allocatedBytes, 4096)
  await b.zero(8192, 100, { fua: false, fast: false, noHole: false })
  assert.equal(b.allocatedBytes, 4096, 'a partially zeroed page that still holds data stays')
  await b.zero(8192, 4096, { fua: false, fast: true, noHole: false })
  assert.equal(b.allocatedBytes, 0)
  await b.zero(0, 8192, { fua: false, fast: false, noHole: true })
  assert.equal(b.allocatedBytes, 8192, 'NO_HOLE provisions the range')
  assert.deepEqual(await b.extents(0, 16384), [
    { lengthBytes: 8192, hole: false, zero: false },
    { lengthBytes: 8192, hole: true, zero: true },
  ])
})

test('MemoryBackend refuses writes beyond its capacity before changing anything', async () => {
  const b = new MemoryBackend({ sizeBytes: MiB, capacityBytes: 8192 })
  await b.pwrite(0, Buffer.alloc(8192, 1), { fua: false })
  await assert.rejects(b.pwrite(8192, Buffer.alloc(10, 2), { fua: false }), { name: 'ResourceExhaustedError' })
  await assert.rejects(b.pwrite(4000, Buffer.alloc(8192, 2), { fua: false }), { name: 'ResourceExhaustedError' })
  assert.ok(Buffer.from(await b.pread(0, 8192)).equals(Buffer.alloc(8192, 1)), 'a refused write changed nothing')
  await assert.rejects(b.zero(0, 4096, { fua: false, fast: true, noHole: true }), { name: 'FastZeroUnsupportedError' })
})

test('MemoryBackend validates its construction and its block sizes', () => {
  assert.throws(() => new MemoryBackend({ sizeBytes: -1 }), { name: 'InvalidArgumentError' })
  assert.throws(() => new MemoryBackend({ sizeBytes: MiB, pageSizeBytes: 3000 }), { name: 'InvalidArgumentError' })
  assert.throws(
    () => new MemoryBackend({ sizeBytes: MiB, blockSize: { minimumBytes: 3, preferredBytes: 4096, maximumBytes: MiB } }),
    { name: 'InvalidArgumentError' },
  )
  assert.throws(
    () => new MemoryBackend({ sizeBytes: MiB, blockSize: { minimumBytes: 512, preferredBytes: 256, maximumBytes: MiB } }),
    { name: 'InvalidArgumentError' },
  )
})
