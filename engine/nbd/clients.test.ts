/**
 * The NBD server against real clients: libnbd's nbdinfo, nbdcopy and nbdsh,
 * qemu-io, and fio's nbd engine. Loopback and ephemeral ports only.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryBackend } from './memory-backend.js'
import { run, runOk, startTestServer, type TestServer } from './testing.js'
import { NbdServer } from './server.js'
import { staticExports } from './backend.js'
import { silentLogger } from '../../core/logger.js'
import { Registry } from 'prom-client'
import { seededWords } from '../../core/seeded-random.js'

const MiB = 1024 * 1024
/**
 * nbdsh runs `python3 -m nbd`; the python3 that has the nbd module is Debian's, which a
 * user-installed interpreter earlier on PATH (pyenv) would otherwise shadow.
 */
const nbdshEnv = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` }

/** A deterministic pseudo-random image, so failures reproduce. */
function patternedImage(sizeBytes: number, seed: number): Buffer {
  return seededWords(sizeBytes, seed)
}

/** `nbdinfo --map` lines as [offset, length, type]. */
function parseMap(text: string): Array<[number, number, number]> {
  return text
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/).slice(0, 3).map(Number) as [number, number, number])
}

describe('NBD server with real clients', () => {
  let srv: TestServer
  let dir: string
  const vol = new MemoryBackend({ sizeBytes: 64 * MiB })
  const ro = new MemoryBackend({ sizeBytes: 4 * MiB, readOnly: true, description: 'read only' })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-'))
    srv = await startTestServer({ vol, ro, mapvol: new MemoryBackend({ sizeBytes: 16 * MiB }), copy: new MemoryBackend({ sizeBytes: 8 * MiB }), fio: new MemoryBackend({ sizeBytes: 16 * MiB }) })
  })
  after(async () => {
    await srv.stop()
    await rm(dir, { recursive: true, force: true })
  })

  test('nbdinfo --json reports size, flags, block sizes and base:allocation', async () => {
    const info = JSON.parse(await runOk('nbdinfo', ['--json', srv.uri('vol')]))
    const exp = info.exports[0]
    assert.equal(info.protocol, 'newstyle-fixed')
    assert.equal(exp['export-size'], 64 * MiB)
    assert.equal(exp.is_read_only, false)
    assert.equal(exp.can_flush, true)
    assert.equal(exp.can_fua, true)
    assert.equal(exp.can_trim, true)
    assert.equal(exp.can_zero, true)
    assert.equal(exp.can_fast_zero, true)
    assert.equal(exp.can_multi_conn, true)
    assert.equal(exp.block_size_maximum, 32 * MiB)
    assert.deepEqual(exp.contexts, ['base:allocation'])
    const roInfo = JSON.parse(await runOk('nbdinfo', ['--json', srv.uri('ro')])).exports[0]
    assert.equal(roInfo.is_read_only, true)
    assert.equal(roInfo.can_trim, false)
    assert.equal(roInfo.description, 'read only')
  })

  test('nbdinfo --list names every export; an unknown export is refused', async () => {
    const list = JSON.parse(await runOk('nbdinfo', ['--json', '--list', srv.uri('')]))
    const names = list.exports.map((e: { 'export-name': string }) => e['export-name']).sort()
    assert.deepEqual(names, ['copy', 'fio', 'mapvol', 'ro', 'vol'])
    const missing = await run('nbdinfo', [srv.uri('nope')])
    assert.notEqual(missing.code, 0)
  })

  test('qemu-io writes patterns, reads them back verified, zeroes and discards', async () => {
    const out = await runOk('qemu-io', [
      '-f', 'raw', srv.uri('vol'),
      '-c', 'write -P 0xab 0 1M',
      '-c', 'write -P 0xcd 1M 512k',
      '-c', 'read -P 0xab 0 1M',
      '-c', 'read -P 0xcd 1M 512k',
      '-c', 'write -z 256k 64k',
      '-c', 'read -P 0 256k 64k',
      '-c', 'read -P 0xab 0 256k',
      '-c', 'discard 1M 512k',
      '-c', 'write -z -u 8M 1M',
      '-c', 'read -P 0 8M 1M',
    ])
    assert.doesNotMatch(out, /Pattern verification failed|error/i)
    const data = await vol.pread(0, 2 * MiB)
    assert.equal(data[0], 0xab)
    assert.equal(data[256 * 1024], 0)
    assert.equal(data[MiB], 0, 'discarded range reads as zeroes in the memory backend')
  })

  test('nbdinfo --map reports holes and data where they are', async () => {
    await runOk('qemu-io', ['-f', 'raw', srv.uri('mapvol'), '-c', 'write -P 1 1M 64k', '-c', 'write -P 2 4M 1M', '-c', 'discard 4M 512k'])
    const map = parseMap(await runOk('nbdinfo', ['--map', srv.uri('mapvol')]))
    assert.deepEqual(map, [
      [0, MiB, 3],
      [MiB, 64 * 1024, 0],
      [MiB + 64 * 1024, 3 * MiB - 64 * 1024 + 512 * 1024, 3],
      [4 * MiB + 512 * 1024, 512 * 1024, 0],
      [5 * MiB, 11 * MiB, 3],
    ])
  })

  test('nbdcopy copies a file in over four connections and out again unchanged', async () => {
    const image = patternedImage(8 * MiB, 0xc0ffee)
    image.fill(0, 2 * MiB, 3 * MiB) // a hole the copy may skip, and must still read back as zeroes
    const src = join(dir, 'src.img')
    const back = join(dir, 'back.img')
    await writeFile(src, image)
    await runOk('nbdcopy', ['--connections=4', '--flush', src, srv.uri('copy')])
    await runOk('nbdcopy', [srv.uri('copy'), back])
    assert.ok((await readFile(back)).equals(image), 'copied-out image differs from the source')
  })

  test('fio random writes with crc32c verify, one job at depth 32 and four jobs over four connections', async () => {
    const common = ['--ioengine=nbd', `--uri=${srv.uri('fio')}`, '--bs=4k', '--iodepth=32', '--verify=crc32c', '--randseed=1234', '--output-format=json', '--verify_state_save=0']
    // fio prints a connection notice before its JSON.
    const json = (out: string) => JSON.parse(out.slice(out.indexOf('{')))
    const one = json(await runOk('fio', ['--name=one', '--rw=randwrite', '--size=8M', ...common]))
    assert.equal(one.jobs[0].error, 0)
    assert.ok(one.jobs[0].write.io_bytes >= 8 * MiB)
    const many = json(await runOk('fio', ['--name=many', '--rw=randwrite', '--size=2M', '--numjobs=4', '--offset_increment=2M', ...common]))
    for (const job of many.jobs) assert.equal(job.error, 0)
  })

  test('nbdsh: structured replies, base:allocation block status with REQ_ONE, FUA and flags', async () => {
    const script = `
h.set_request_structured_replies(True)
h.add_meta_context("base:allocation")
h.connect_uri("${srv.uri('vol')}")
assert h.get_structured_replies_negotiated()
assert h.can_meta_context("base:allocation")
assert h.can_fua() and h.can_flush() and h.can_multi_conn() and h.can_df()
h.zero(16 * 1048576, 32 * 1048576)
h.pwrite(b"\\x5a" * 65536, 32 * 1048576 + 131072, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 32 * 1048576 + 131072) == b"\\x5a" * 65536
chunks = []
def chunk(buf, offset, status, err):
    chunks.append((offset, len(buf), status))
    return 0
h.pread_structured(8192, 32 * 1048576, chunk)
assert chunks == [(32 * 1048576, 8192, nbd.READ_HOLE)], chunks
chunks.clear()
h.pread_structured(8192, 32 * 1048576, chunk, nbd.CMD_FLAG_DF)
assert chunks == [(32 * 1048576, 8192, nbd.READ_DATA)], chunks
chunks.clear()
h.pread_structured(135168, 32 * 1048576 + 4096, chunk)
assert chunks == [(32 * 1048576 + 4096, 126976, nbd.READ_HOLE), (32 * 1048576 + 131072, 8192, nbd.READ_DATA)], chunks
seen = []
def cb(ctx, offset, entries, err):
    assert ctx == "base:allocation"
    seen.append((offset, list(entries)))
    return 0
h.block_status(1048576, 32 * 1048576, cb)
assert seen[-1] == (32 * 1048576, [131072, 3, 65536, 0, 1048576 - 196608, 3]), seen
h.block_status(1048576, 32 * 1048576, cb, nbd.CMD_FLAG_REQ_ONE)
assert seen[-1] == (32 * 1048576, [131072, 3]), seen
h.flush()
h.trim(65536, 32 * 1048576 + 131072)
assert h.pread(65536, 32 * 1048576 + 131072) == bytes(65536)
try:
    h.zero(4096, 32 * 1048576, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
    raise AssertionError("fast zero with NO_HOLE should fail")
except nbd.Error as e:
    assert e.errno == "ENOTSUP", e
h.shutdown()
print("ok")
`
    assert.equal((await runOk('nbdsh', ['-c', script], 60_000, nbdshEnv)).trim(), 'ok')
  })

  test('nbdsh: the read-only export refuses writes with EPERM and still serves reads', async () => {
    const script = `
h.set_strict_mode(0)
h.connect_uri("${srv.uri('ro')}")
assert h.is_read_only()
try:
    h.pwrite(b"x" * 512, 0)
    raise AssertionError("write to a read-only export succeeded")
except nbd.Error as e:
    assert e.errno == "EPERM", e
assert h.pread(512, 0) == bytes(512)
print("ok")
`
    assert.equal((await runOk('nbdsh', ['-c', script], 60_000, nbdshEnv)).trim(), 'ok')
  })
})

test('the server serves NBD over a Unix socket', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-unix-'))
  const path = join(dir, 'nbd.sock')
  const server = new NbdServer(
    { listen: [{ path }] },
    { logger: silentLogger(), registry: new Registry(), exports: staticExports(new Map([['u', new MemoryBackend({ sizeBytes: MiB })]])) },
  )
  await server.start()
  try {
    const uri = `nbd+unix:///u?socket=${path}`
    await runOk('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 7 0 64k', '-c', 'read -P 7 0 64k'])
    const info = JSON.parse(await runOk('nbdinfo', ['--json', uri]))
    assert.equal(info.exports[0]['export-size'], MiB)
  } finally {
    await server.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
