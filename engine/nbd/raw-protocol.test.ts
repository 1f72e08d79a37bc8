/**
 * Byte-level tests with a raw node:net client: inputs no well-behaved client sends.
 * Each misbehaving client gets the spec's reply or a clean close, while a
 * well-behaved client on the same server keeps reading and writing throughout.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { Extent, NbdBackend, WriteOptions, ZeroOptions } from './backend.js'
import { MemoryBackend } from './memory-backend.js'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_ENOTSUP,
} from './protocol.js'
import { RawClient, startTestServer, u32, within, type TestServer } from './testing.js'

const MiB = 1024 * 1024
/** Sparse, so a size above the 32 MiB maximum block size costs nothing. */
const SIZE = 64 * MiB

/** A second client that keeps doing verified writes and reads until told to stop. */
function steadyClient(srv: TestServer) {
  let running = true
  let rounds = 0
  const done = (async () => {
    const c = await RawClient.connect(srv.port)
    await c.open('steady')
    for (let i = 0; running; i++) {
      const data = Buffer.alloc(4096, i & 0xff)
      c.sendRequest(NBD_CMD_WRITE, BigInt(2 * i), (i % 64) * 4096, 4096, 0, data)
      const w = await c.readSimpleReply()
      assert.equal(w.errno, 0)
      c.sendRequest(NBD_CMD_READ, BigInt(2 * i + 1), (i % 64) * 4096, 4096)
      const r = await c.readSimpleReply(4096)
      assert.ok(r.data.equals(data), 'steady client read back what it wrote')
      rounds++
    }
    c.sendRequest(NBD_CMD_DISC, 99n, 0, 0)
    await c.closed()
  })()
  return {
    get rounds() {
      return rounds
    },
    async stop(): Promise<number> {
      running = false
      await within(done, 10_000, 'the steady client to finish')
      return rounds
    },
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setImmediate(r))
  }
}

describe('NBD server under bad input', () => {
  let srv: TestServer
  let steady: ReturnType<typeof steadyClient>
  const vol = new MemoryBackend({ sizeBytes: SIZE })

  before(async () => {
    srv = await startTestServer(
      { vol, steady: new MemoryBackend({ sizeBytes: MiB }), ro: new MemoryBackend({ sizeBytes: MiB, readOnly: true }) },
      { maxOptionBytes: 8192 },
    )
    steady = steadyClient(srv)
    await waitFor(() => steady.rounds > 0, 'the steady client to start')
  })
  after(async () => {
    const before = steady.rounds
    await waitFor(() => steady.rounds > before, 'the steady client to keep going after all bad clients')
    await steady.stop()
    await srv.stop()
  })

  test('greeting is NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES', async () => {
    const c = await RawClient.connect(srv.port)
    const g = await c.greet()
    assert.equal(g.readBigUInt64BE(0), NBD_INIT_MAGIC)
    assert.equal(g.readBigUInt64BE(8), NBD_OPTS_MAGIC)
    assert.equal(g.readUInt16BE(16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)
    c.destroy()
  })

  test('unknown client flags close the connection', async () => {
    const c = await RawClient.connect(srv.port)
    await c.greet(0x80)
    await within(c.closed(), 5000, 'server to close')
  })

  test('garbage instead of an option magic closes the connection', async () => {
    const c = await RawClient.connect(srv.port)
    await c.greet()
    c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    await within(c.closed(), 5000, 'server to close')
  })

  test('a truncated handshake is dropped without disturbing the server', async () => {
    const c = await RawClient.connect(srv.port)
    await c.reader.read(18)
    c.write(Buffer.from([0, 0])) // half of the client flags
    c.socket.end()
    await within(c.closed(), 5000, 'server to close')
  })

  test('option errors: unknown, STARTTLS, bad lengths, unknown export; the connection stays usable', async () => {
    const c = await RawClient.connect(srv.port)
    await c.greet()
    const expectReply = async (type: number) => assert.equal((await c.readOptionReply()).type, type)
    c.sendOption(0x1234)
    await expectReply(NBD_REP_ERR_UNSUP)
    c.sendOption(NBD_OPT_STARTTLS)
    await expectReply(NBD_REP_ERR_UNSUP)
    c.sendOption(NBD_OPT_LIST, Buffer.from('x'))
    await expectReply(NBD_REP_ERR_INVALID)
    c.sendOption(NBD_OPT_STRUCTURED_REPLY, Buffer.from('x'))
    await expectReply(NBD_REP_ERR_INVALID)
    c.sendOption(NBD_OPT_GO, Buffer.concat([u32(100), Buffer.from('vol'), Buffer.from([0, 0])])) // name length overruns
    await expectReply(NBD_REP_ERR_INVALID)
    c.sendOption(NBD_OPT_INFO, Buffer.concat([u32(3), Buffer.from('vol'), Buffer.from([0, 1])])) // one request announced, none sent
    await expectReply(NBD_REP_ERR_INVALID)
    c.sendOption(NBD_OPT_SET_META_CONTEXT, Buffer.concat([u32(3), Buffer.from('vol'), u32(0)])) // before structured replies
    await expectReply(NBD_REP_ERR_INVALID)
    c.sendOption(NBD_OPT_GO, Buffer.concat([u32(4), Buffer.from('nope'), Buffer.from([0, 0])]))
    await expectReply(NBD_REP_ERR_UNKNOWN)
    c.sendOption(NBD_OPT_LIST)
    const list = await c.readOptionReplies()
    assert.deepEqual(list.map((r) => r.type), [NBD_REP_SERVER, NBD_REP_SERVER, NBD_REP_SERVER, NBD_REP_ACK])
    c.sendOption(NBD_OPT_GO, Buffer.concat([u32(3), Buffer.from('vol'), Buffer.from([0, 1, 0, 3])]))
    const go = await c.readOptionReplies()
    assert.equal(go.at(-1)?.type, NBD_REP_ACK)
    const exportInfo = go.find((r) => r.type === NBD_REP_INFO && r.data.readUInt16BE(0) === 0)
    assert.equal(exportInfo?.data.readBigUInt64BE(2), BigInt(SIZE))
    c.sendRequest(NBD_CMD_FLUSH, 1n, 0, 0)
    assert.equal((await c.readSimpleReply()).errno, 0)
    c.destroy()
  })

  test('meta context: LIST shows base:allocation, SET selects it, unknown namespaces are ignored', async () => {
    const c = await RawClient.connect(srv.port)
    await c.greet()
    c.sendOption(NBD_OPT_STRUCTURED_REPLY)
    assert.equal((await c.readOptionReply()).type, NBD_REP_ACK)
    const q = (...queries: string[]) => Buffer.concat([u32(3), Buffer.from('vol'), u32(queries.length), ...queries.flatMap((s) => [u32(s.length), Buffer.from(s)])])
    c.sendOption(NBD_OPT_LIST_META_CONTEXT, q())
    const listed = await c.readOptionReplies()
    assert.deepEqual(listed.map((r) => r.type), [NBD_REP_META_CONTEXT, NBD_REP_ACK])
    assert.equal(listed[0]?.data.subarray(4).toString(), 'base:allocation')
    c.sendOption(NBD_OPT_SET_META_CONTEXT, q('x-other:thing', 'base:allocation'))
    const set = await c.readOptionReplies()
    assert.deepEqual(set.map((r) => r.type), [NBD_REP_META_CONTEXT, NBD_REP_ACK])
    c.sendOption(NBD_OPT_SET_META_CONTEXT, q('nocolon'))
    assert.equal((await c.readOptionReply()).type, NBD_REP_ERR_INVALID)
    c.destroy()
  })

  test('an oversize option length gets NBD_REP_ERR_TOO_BIG and a close', async () => {
    const c = await RawClient.connect(srv.port)
    await c.greet()
    c.sendOption(NBD_OPT_GO, Buffer.alloc(0), 0xfffffff0)
    assert.equal((await c.readOptionReply()).type, NBD_REP_ERR_TOO_BIG)
    await within(c.closed(), 5000, 'server to close')
  })

  test('EXPORT_NAME for an unknown export closes; for a known one sends size and flags without zeroes', async () => {
    const bad = await RawClient.connect(srv.port)
    await bad.greet()
    bad.sendOption(NBD_OPT_EXPORT_NAME, Buffer.from('nope'))
    await within(bad.closed(), 5000, 'server to close')
    const good = await RawClient.connect(srv.port)
    await good.greet()
    good.sendOption(NBD_OPT_EXPORT_NAME, Buffer.from('vol'))
    const reply = await good.reader.read(10)
    assert.equal(reply.readBigUInt64BE(0), BigInt(SIZE))
    good.sendRequest(NBD_CMD_READ, 7n, 0, 512)
    const r = await good.readSimpleReply(512)
    assert.equal(r.handle, 7n)
    assert.equal(r.errno, 0)
    good.destroy()
  })

  test('transmission errors by the spec: past end, bad flags, unknown command, oversize, read-only', async () => {
    const c = await RawClient.connect(srv.port)
    await c.open('vol')
    const expectErrno = async (errno: number, handle: bigint) => {
      const r = await c.readSimpleReply()
      assert.equal(r.handle, handle)
      assert.equal(r.errno, errno)
    }
    c.sendRequest(NBD_CMD_READ, 1n, SIZE - 512, 1024)
    await expectErrno(NBD_EINVAL, 1n)
    c.sendRequest(NBD_CMD_WRITE, 2n, SIZE - 512, 1024, 0, Buffer.alloc(1024, 1))
    await expectErrno(NBD_ENOSPC, 2n)
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 3n, SIZE, 512)
    await expectErrno(NBD_ENOSPC, 3n)
    c.sendRequest(NBD_CMD_TRIM, 4n, 2n ** 63n, 512)
    await expectErrno(NBD_EINVAL, 4n)
    c.sendRequest(NBD_CMD_READ, 5n, 0, 512, 0x40)
    await expectErrno(NBD_EINVAL, 5n)
    c.sendRequest(NBD_CMD_READ, 6n, 0, 512, NBD_CMD_FLAG_DF) // DF needs structured replies
    await expectErrno(NBD_EINVAL, 6n)
    c.sendRequest(NBD_CMD_WRITE, 7n, 0, 512, NBD_CMD_FLAG_REQ_ONE, Buffer.alloc(512))
    await expectErrno(NBD_EINVAL, 7n)
    c.sendRequest(99, 8n, 0, 0)
    await expectErrno(NBD_EINVAL, 8n)
    c.sendRequest(NBD_CMD_READ, 9n, 0, 0)
    await expectErrno(NBD_EINVAL, 9n)
    c.sendRequest(NBD_CMD_READ, 10n, 0, 33 * MiB)
    await expectErrno(NBD_EINVAL, 10n)
    c.sendRequest(NBD_CMD_BLOCK_STATUS, 11n, 0, 512)
    await expectErrno(NBD_EINVAL, 11n)
    c.sendRequest(NBD_CMD_FLUSH, 12n, 1, 0)
    await expectErrno(NBD_EINVAL, 12n)
    // After all that, the connection still works and nothing was written.
    c.sendRequest(NBD_CMD_READ, 13n, SIZE - 512, 512)
    const r = await c.readSimpleReply(512)
    assert.equal(r.errno, 0)
    assert.ok(r.data.equals(Buffer.alloc(512)))
    c.destroy()

    const ro = await RawClient.connect(srv.port)
    await ro.open('ro')
    ro.sendRequest(NBD_CMD_WRITE, 1n, 0, 512, 0, Buffer.alloc(512, 9))
    assert.equal((await ro.readSimpleReply()).errno, NBD_EPERM)
    ro.sendRequest(NBD_CMD_TRIM, 2n, 0, 512)
    assert.equal((await ro.readSimpleReply()).errno, NBD_EPERM)
    ro.destroy()
  })

  test('structured replies carry errors as error chunks with a message', async () => {
    const c = await RawClient.connect(srv.port)
    await c.open('vol', { structured: true })
    c.sendRequest(NBD_CMD_READ, 1n, SIZE, 512)
    const r = await c.readReply()
    assert.equal(r.errno, NBD_EINVAL)
    assert.equal(r.chunks[0]?.type, NBD_REPLY_TYPE_ERROR)
    assert.match(r.chunks[0]?.payload.subarray(6).toString() ?? '', /past the export size/)
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 2n, 0, 4096, NBD_CMD_FLAG_FAST_ZERO | 2)
    assert.equal((await c.readReply()).errno, NBD_ENOTSUP)
    c.sendRequest(NBD_CMD_READ, 3n, 0, 4096, NBD_CMD_FLAG_DF)
    const ok = await c.readReply()
    assert.equal(ok.errno, 0)
    assert.deepEqual(ok.chunks.map((ch) => ch.type), [NBD_REPLY_TYPE_OFFSET_DATA])
    c.destroy()
  })

  test('a WRITE too large to read gets EINVAL and a close; replies in flight still go out', async () => {
    const c = await RawClient.connect(srv.port)
    await c.open('vol')
    c.sendRequest(NBD_CMD_READ, 1n, 0, 4096)
    c.sendRequest(NBD_CMD_WRITE, 2n, 0, 0xffffff00)
    const first = await c.readSimpleReply(4096)
    assert.equal(first.handle, 1n)
    const second = await c.readSimpleReply()
    assert.equal(second.handle, 2n)
    assert.equal(second.errno, NBD_EINVAL)
    await within(c.closed(), 5000, 'server to close')
  })

  test('a bad request magic closes the connection', async () => {
    const c = await RawClient.connect(srv.port)
    await c.open('vol')
    c.write(Buffer.alloc(28, 0xee))
    await within(c.closed(), 5000, 'server to close')
  })

  test('a client vanishing mid-WRITE payload changes nothing and harms no one', async () => {
    const c = await RawClient.connect(srv.port)
    await c.open('vol')
    c.sendRequest(NBD_CMD_WRITE, 1n, MiB, 65536, 0, Buffer.alloc(1000, 0x77))
    await new Promise((r) => setImmediate(r))
    c.destroy()
    await within(c.closed(), 5000, 'socket to close')
    await waitFor(() => srv.server.connectionCount <= 1, 'server to drop the vanished client')
    assert.ok(Buffer.from(await vol.pread(MiB, 65536)).equals(Buffer.alloc(65536)), 'a partial write was applied')
  })
})

/** Completes requests in the reverse of their arrival by holding each for a set delay. */
class DelayedBackend implements NbdBackend {
  readonly canFua = true
  readonly canMultiConn = false
  readonly canTrim = true
  readonly canZero = true
  readonly canFastZero = false
  readonly isReadOnly = false
  readonly completions: number[] = []
  constructor(
    private readonly inner: MemoryBackend,
    private readonly delayMs: (offsetBytes: number) => number,
  ) {}
  get sizeBytes() {
    return this.inner.sizeBytes
  }
  get blockSize() {
    return this.inner.blockSize
  }
  private async hold(offsetBytes: number): Promise<void> {
    await new Promise((r) => setTimeout(r, this.delayMs(offsetBytes)))
    this.completions.push(offsetBytes)
  }
  async pread(o: number, n: number) {
    await this.hold(o)
    return this.inner.pread(o, n)
  }
  async pwrite(o: number, d: Uint8Array, opts: WriteOptions) {
    await this.hold(o)
    return this.inner.pwrite(o, d, opts)
  }
  flush() {
    return this.inner.flush()
  }
  trim(o: number, n: number, opts: WriteOptions) {
    return this.inner.trim(o, n, opts)
  }
  zero(o: number, n: number, opts: ZeroOptions) {
    return this.inner.zero(o, n, opts)
  }
  extents(o: number, n: number): Promise<Extent[]> {
    return this.inner.extents(o, n)
  }
}

test('pipelined requests complete out of order and every reply carries its own handle', async () => {
  const inner = new MemoryBackend({ sizeBytes: MiB })
  for (let i = 0; i < 8; i++) await inner.pwrite(i * 4096, Buffer.alloc(4096, i + 1), { fua: false })
  // Earlier offsets wait longer, so replies come back last-request-first.
  const backend = new DelayedBackend(inner, (o) => 10 + (8 - o / 4096) * 15)
  const srv = await startTestServer({ d: backend })
  try {
    const c = await RawClient.connect(srv.port)
    await c.open('d')
    // One segment, so all eight arrive together and only the backend's delays order the replies.
    c.socket.cork()
    for (let i = 0; i < 8; i++) c.sendRequest(NBD_CMD_READ, BigInt(1000 + i), i * 4096, 4096)
    c.socket.uncork()
    const handles: bigint[] = []
    for (let i = 0; i < 8; i++) {
      const r = await c.readSimpleReply(4096)
      const index = Number(r.handle - 1000n)
      assert.ok(r.data.equals(Buffer.alloc(4096, index + 1)), `reply for handle ${r.handle} holds that request's data`)
      handles.push(r.handle)
    }
    assert.deepEqual(handles, [1007n, 1006n, 1005n, 1004n, 1003n, 1002n, 1001n, 1000n])
    c.destroy()
  } finally {
    await srv.stop()
  }
})

test('the in-flight bound holds: with a limit of 2, at most 2 backend calls run at once', async () => {
  let running = 0
  let peak = 0
  const inner = new MemoryBackend({ sizeBytes: MiB })
  const backend = new DelayedBackend(inner, () => 5)
  const originalPread = backend.pread.bind(backend)
  backend.pread = async (o: number, n: number) => {
    running++
    peak = Math.max(peak, running)
    try {
      return await originalPread(o, n)
    } finally {
      running--
    }
  }
  const srv = await startTestServer({ d: backend }, { maxInFlightRequests: 2 })
  try {
    const c = await RawClient.connect(srv.port)
    await c.open('d')
    for (let i = 0; i < 20; i++) c.sendRequest(NBD_CMD_READ, BigInt(i), 0, 512)
    const seen = new Set<bigint>()
    for (let i = 0; i < 20; i++) seen.add((await c.readSimpleReply(512)).handle)
    assert.equal(seen.size, 20)
    assert.equal(peak, 2)
    c.destroy()
  } finally {
    await srv.stop()
  }
})
