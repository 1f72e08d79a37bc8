import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { NbdBackend, WriteOptions } from './backend.js'
import { MemoryBackend } from './memory-backend.js'
import { NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL } from './protocol.js'
import { NbdServer } from './server.js'
import { RawClient, startTestServer, within } from './testing.js'

const MiB = 1024 * 1024

test('graceful stop answers requests in flight, then closes connections and listeners', async () => {
  let release: () => void = () => {}
  const gate = new Promise<void>((r) => (release = r))
  let entered: () => void = () => {}
  const reachedBackend = new Promise<void>((r) => (entered = r))
  const inner = new MemoryBackend({ sizeBytes: MiB })
  const slow: NbdBackend = Object.assign(Object.create(inner) as MemoryBackend, {
    pwrite: async (o: number, d: Uint8Array, opts: WriteOptions) => {
      entered()
      await gate
      return inner.pwrite(o, d, opts)
    },
  })
  const srv = await startTestServer({ s: slow })
  const c = await RawClient.connect(srv.port)
  await c.open('s')
  c.sendRequest(NBD_CMD_WRITE, 1n, 0, 512, 0, Buffer.alloc(512, 5))
  await within(reachedBackend, 5000, 'the write to reach the backend')
  const stopped = srv.stop()
  release()
  const reply = await within(c.readSimpleReply(), 5000, 'the in-flight write reply')
  assert.equal(reply.errno, 0)
  assert.equal(reply.handle, 1n)
  await within(stopped, 5000, 'stop to finish')
  await within(c.closed(), 5000, 'the connection to close')
  assert.ok(Buffer.from(await inner.pread(0, 512)).equals(Buffer.alloc(512, 5)))
  await assert.rejects(RawClient.connect(srv.port))
})

test('FUA and WRITE_ZEROES are emulated for a backend without native support', async () => {
  const inner = new MemoryBackend({ sizeBytes: MiB })
  const plain: NbdBackend = Object.assign(Object.create(inner) as MemoryBackend, { canFua: false, canZero: false, canFastZero: false })
  const srv = await startTestServer({ p: plain })
  try {
    const c = await RawClient.connect(srv.port)
    await c.open('p')
    c.sendRequest(NBD_CMD_WRITE, 1n, 0, 8192, NBD_CMD_FLAG_FUA, Buffer.alloc(8192, 9))
    assert.equal((await c.readSimpleReply()).errno, 0)
    // flush runs with `this` = the wrapper, so the count lands there.
    assert.equal((plain as MemoryBackend).flushCount, 1, 'FUA became a flush')
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 2n, 1024, 4096)
    assert.equal((await c.readSimpleReply()).errno, 0)
    c.sendRequest(NBD_CMD_READ, 3n, 0, 8192)
    const got = (await c.readSimpleReply(8192)).data
    const want = Buffer.alloc(8192, 9)
    want.fill(0, 1024, 5120)
    assert.ok(got.equals(want))
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 4n, 0, 4096, 1 << 4) // FAST_ZERO: offered, but this backend cannot
    assert.equal((await c.readSimpleReply()).errno, 95)
    c.destroy()
  } finally {
    await srv.stop()
  }
})

test('multi-conn: a write acknowledged on one connection is visible and flushed from another', async () => {
  const vol = new MemoryBackend({ sizeBytes: MiB })
  const srv = await startTestServer({ v: vol })
  try {
    const a = await RawClient.connect(srv.port)
    const b = await RawClient.connect(srv.port)
    await a.open('v')
    await b.open('v')
    a.sendRequest(NBD_CMD_WRITE, 1n, 4096, 4096, 0, Buffer.alloc(4096, 0x42))
    assert.equal((await a.readSimpleReply()).errno, 0)
    b.sendRequest(NBD_CMD_FLUSH, 2n, 0, 0)
    assert.equal((await b.readSimpleReply()).errno, 0)
    assert.equal(vol.flushCount, 1)
    b.sendRequest(NBD_CMD_READ, 3n, 4096, 4096)
    assert.ok((await b.readSimpleReply(4096)).data.equals(Buffer.alloc(4096, 0x42)))
    a.destroy()
    b.destroy()
  } finally {
    await srv.stop()
  }
})

test('metrics count requests by command and result, bytes, connections and protocol errors', async () => {
  const srv = await startTestServer({ v: new MemoryBackend({ sizeBytes: MiB }) })
  try {
    const c = await RawClient.connect(srv.port)
    await c.open('v')
    c.sendRequest(NBD_CMD_WRITE, 1n, 0, 4096, 0, Buffer.alloc(4096, 1))
    await c.readSimpleReply()
    c.sendRequest(NBD_CMD_READ, 2n, 0, 2048)
    await c.readSimpleReply(2048)
    c.sendRequest(NBD_CMD_READ, 3n, MiB, 512)
    assert.equal((await c.readSimpleReply()).errno, NBD_EINVAL)
    const text = await srv.registry.metrics()
    assert.match(text, /cairn_nbd_requests_total\{command="write",result="ok"\} 1/)
    assert.match(text, /cairn_nbd_requests_total\{command="read",result="EINVAL"\} 1/)
    assert.match(text, /cairn_nbd_written_bytes_total 4096/)
    assert.match(text, /cairn_nbd_read_bytes_total 2048/)
    assert.match(text, /cairn_nbd_connections 1/)
    assert.match(text, /cairn_nbd_request_duration_seconds_count\{command="read"\} 2/)
    c.write(Buffer.alloc(28, 0xff))
    await within(c.closed(), 5000, 'close after a bad magic')
    const deadline = Date.now() + 5000
    while (!/cairn_nbd_connections 0/.test(await srv.registry.metrics())) {
      assert.ok(Date.now() < deadline, 'connection gauge returns to 0')
      await new Promise((r) => setImmediate(r))
    }
    assert.match(await srv.registry.metrics(), /cairn_nbd_protocol_errors_total\{reason="bad_request_magic"\} 1/)
  } finally {
    await srv.stop()
  }
})

test('the server refuses impossible limits and an empty listen list', () => {
  const components = { logger: undefined as never, registry: undefined as never, exports: { resolve: () => undefined, list: () => [] } }
  assert.throws(() => new NbdServer({ listen: [] }, components), { name: 'InvalidArgumentError' })
  assert.throws(() => new NbdServer({ listen: [{ host: '127.0.0.1', port: 0 }], maxInFlightRequests: 0 }, components), {
    name: 'InvalidArgumentError',
  })
})
