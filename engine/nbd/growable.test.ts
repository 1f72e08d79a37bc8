import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { MemoryBackend } from './memory-backend.js'
import { growableBackend, growableExports } from './growable.js'
import { staticExports, type NbdBackend } from './backend.js'
import { runOk, startTestServer } from './testing.js'

const MiB = 1024 * 1024
/** nbdsh needs Debian's python3 (it has the nbd module), which a pyenv on PATH can hide. */
const nbdshEnv = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` }

/** A memory backend whose visible size the test moves (as a resized volume's does). */
function resizable(maxBytes: number, initialBytes: number): { backend: NbdBackend; resize(bytes: number): void } {
  const memory = new MemoryBackend({ sizeBytes: maxBytes })
  let sizeBytes = initialBytes
  const backend = new Proxy(memory, {
    get(target, key) {
      if (key === 'sizeBytes') return sizeBytes
      const value = Reflect.get(target, key, target) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  }) as NbdBackend
  return { backend, resize: (bytes) => (sizeBytes = bytes) }
}

test('a growable export advertises the ceiling, serves the volume, refuses the tail with the spec errnos, and shows growth on the same connection', async () => {
  const volume = resizable(4 * MiB, 1 * MiB)
  const server = await startTestServer({ vol: growableBackend(volume.backend, 64 * MiB) })
  try {
    // One nbdsh session: size, a write and read inside, errors past the volume's end, then growth.
    const script = `
import nbd, sys
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri("${server.uri('vol')}")
print("size", h.get_size())
h.pwrite(b"\\x5a" * 4096, 4096)
assert h.pread(4096, 4096) == b"\\x5a" * 4096
ops = (
    ("read", lambda: h.pread(4096, 1024 * 1024)),
    ("write", lambda: h.pwrite(b"\\x01" * 4096, 2 * 1024 * 1024)),
    ("status", lambda: h.block_status(4096, 2 * 1024 * 1024, lambda *a: 0)),
)
for name, op in ops:
    try:
        op()
        print(name, "ok")
    except nbd.Error as e:
        print(name, "errno", e.errno)
print("paused")
sys.stdout.flush()
input()
h.pwrite(b"\\x01" * 4096, 2 * 1024 * 1024)
assert h.pread(4096, 2 * 1024 * 1024) == b"\\x01" * 4096
print("grown ok")
`
    const child = spawn('nbdsh', ['-c', script], { env: nbdshEnv, stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    const done = new Promise<number | null>((resolve) => child.once('exit', resolve))
    // Until the session waits for the test (it printed `paused`) or ends.
    const paused = new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('paused')) resolve()
      })
      void done.then(() => resolve())
    })
    await paused
    assert.match(out, /size 67108864/)
    assert.match(out, /read errno EINVAL/, 'a read past the volume is EINVAL')
    assert.match(out, /write errno ENOSPC/, 'a write past the volume is ENOSPC')
    assert.match(out, /status errno EINVAL/, 'block status past the volume is EINVAL')
    volume.resize(4 * MiB)
    child.stdin.end('\n')
    assert.equal(await done, 0, out)
    assert.match(out, /grown ok/)
  } finally {
    await server.stop()
  }
})

test('growableExports wraps every export and keeps the list; a bad ceiling is refused', async () => {
  const inner = staticExports(new Map([['a', new MemoryBackend({ sizeBytes: MiB })]]))
  const exports = growableExports(inner, 8 * MiB)
  assert.deepEqual(await exports.list(), ['a'])
  assert.equal((await exports.resolve('a'))?.sizeBytes, 8 * MiB)
  assert.equal(await exports.resolve('missing'), undefined)
  for (const bad of [0, -4096, 4097, 2 ** 53]) assert.throws(() => growableExports(inner, bad), { name: 'InvalidArgumentError' })
  // A volume larger than the ceiling shows its own size.
  assert.equal(growableBackend(new MemoryBackend({ sizeBytes: 16 * MiB }), 8 * MiB).sizeBytes, 16 * MiB)
  // nbdinfo sees the advertised size through a server too.
  const server = await startTestServer({ a: (await exports.resolve('a')) as NbdBackend })
  try {
    assert.match(await runOk('nbdinfo', ['--size', server.uri('a')]), /^8388608/)
  } finally {
    await server.stop()
  }
})
