/**
 * The NbdBackend contract as a test suite, run against every implementation
 * (the in-memory backend now, the volume engine when it lands).
 * Test infrastructure: imported only by *.test.ts files.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { NbdBackend } from './backend.js'

/** Runs the contract tests for a writable backend of at least 1 MiB with trim and zero. */
export function backendConformance(name: string, create: () => NbdBackend | Promise<NbdBackend>): void {
  const MiB = 1024 * 1024
  const bytes = async (b: NbdBackend, o: number, n: number) => Buffer.from(await b.pread(o, n))

  test(`${name}: a new backend reads as zeroes and reports one zero extent`, async () => {
    const b = await create()
    assert.ok(b.sizeBytes >= MiB)
    assert.ok((await bytes(b, 0, 65536)).equals(Buffer.alloc(65536)))
    const extents = await b.extents(0, MiB)
    assert.ok(extents.length >= 1)
    assert.ok(extents.every((e) => e.zero), 'unwritten space is known zero')
  })

  test(`${name}: unaligned writes read back exactly and leave neighbours alone`, async () => {
    const b = await create()
    await b.pwrite(4000, Buffer.alloc(200, 0xaa), { fua: false })
    await b.pwrite(4100, Buffer.alloc(10, 0xbb), { fua: true })
    const got = await bytes(b, 3990, 220)
    const want = Buffer.alloc(220)
    want.fill(0xaa, 10, 210)
    want.fill(0xbb, 110, 120)
    assert.ok(got.equals(want))
  })

  test(`${name}: the last byte of the export is writable`, async () => {
    const b = await create()
    await b.pwrite(b.sizeBytes - 1, Buffer.from([7]), { fua: false })
    assert.equal((await bytes(b, b.sizeBytes - 1, 1))[0], 7)
  })

  test(`${name}: zero and trim make ranges read as zeroes; partial pages keep their other bytes`, async () => {
    const b = await create()
    await b.pwrite(0, Buffer.alloc(3 * 65536, 0x11), { fua: false })
    await b.zero(100, 65536, { fua: false, fast: false, noHole: false })
    await b.trim(131072, 65536, { fua: false })
    const got = await bytes(b, 0, 3 * 65536)
    assert.equal(got[99], 0x11)
    assert.ok(got.subarray(100, 65636).equals(Buffer.alloc(65536)))
    assert.equal(got[65636], 0x11)
    assert.ok(got.subarray(131072).equals(Buffer.alloc(65536)))
  })

  test(`${name}: extents are consecutive, nonempty, and mark written data as not zero`, async () => {
    const b = await create()
    await b.pwrite(65536, Buffer.alloc(4096, 1), { fua: false })
    const extents = await b.extents(0, 2 * 65536)
    let covered = 0
    let sawData = false
    for (const e of extents) {
      assert.ok(e.lengthBytes > 0)
      if (covered < 65536 + 4096 && covered + e.lengthBytes > 65536) {
        assert.equal(e.zero, false, 'written range is not reported as zero')
        sawData = true
      }
      covered += e.lengthBytes
    }
    assert.ok(sawData)
    assert.ok(covered > 65536)
  })

  test(`${name}: flush resolves and data survives it`, async () => {
    const b = await create()
    await b.pwrite(0, Buffer.alloc(512, 3), { fua: false })
    await b.flush()
    assert.ok((await bytes(b, 0, 512)).equals(Buffer.alloc(512, 3)))
  })
}
