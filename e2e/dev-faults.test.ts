/**
 * Real faults against `cairn dev`: the engine SIGKILLed while a client writes and
 * flushes, a shard file corrupted on disk, a second engine taking the volume over
 * (fencing). Storage nodes SIGKILLed during I/O are in dev-faults-nodes.test.ts (a
 * file of its own, so each file stays well inside the runner's per-file bound).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, open, readFile, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { runOk } from '../engine/nbd/testing.js'
import { freePort } from '../core/free-port.js'
import { CLI_MAIN, Dev, MiB, checkRegion, counts, fetchText, nbdshEnv, waitUntil, writeRegion } from './harness.js'

const BLOCK = 64 * 1024

/** Value of a Prometheus counter (summed over label sets matching `labels`). */
function metricSum(text: string, name: string, labels = ''): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      if (labels === '' || line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
  }
  return sum
}

async function nbdsh(uri: string, code: string, timeoutMs = 120_000): Promise<string> {
  return runOk('nbdsh', ['-u', uri, '-c', code], timeoutMs, nbdshEnv)
}

describe('cairn dev under real faults', () => {
  let dev: Dev
  let work: string

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-e2e-faults-'))
    dev = await Dev.start({ size: '512MiB' })
  })
  after(async () => {
    await dev?.destroy()
    await rm(work, { recursive: true, force: true })
  })

  test('SIGKILL of the engine during flushing writes: every write before the last acknowledged FLUSH reads back', async () => {
    // Block i goes to a distinct slot (7919 is prime to 2048) and holds i in every word.
    const script = [
      'import sys',
      `bs = ${BLOCK}`,
      'for i in range(2048):',
      '    h.pwrite(i.to_bytes(4, "little") * (bs // 4), (i * 7919 % 2048) * bs)',
      '    if i % 8 == 7:',
      '        h.flush()',
      '        print(i, flush=True)',
    ].join('\n')
    const writer = spawn('nbdsh', ['-u', dev.uri, '-c', script], { env: nbdshEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    const flushed: number[] = []
    createInterface({ input: writer.stdout }).on('line', (l) => flushed.push(Number(l)))
    const exited = new Promise((resolve) => writer.once('exit', resolve))
    try {
      await waitUntil(() => flushed.length >= 16, 60_000, 'sixteen acknowledged flushes')
      await dev.killEngine()
      await Promise.race([exited, waitUntil(() => writer.exitCode !== null, 30_000, 'the writer to notice')])
    } finally {
      writer.kill('SIGKILL')
    }
    const last = flushed[flushed.length - 1] as number
    assert.ok(last < 2047, 'the engine died before the writer finished')
    const image = join(work, 'after-kill.img')
    await runOk('nbdcopy', [dev.uri, image], 120_000)
    const bytes = await readFile(image)
    for (let i = 0; i <= last; i++) {
      const at = (i * 7919 % 2048) * BLOCK
      for (let word = 0; word < BLOCK; word += 4096) {
        assert.equal(bytes.readUInt32LE(at + word), i, `block ${i} (acknowledged by the flush after write ${last})`)
      }
    }
  })

  test('a corrupted shard file: reads return correct data and the bad shard is reported (metric and log)', async () => {
    const region = 256 * MiB
    await nbdsh(dev.uri, writeRegion(31, region, 8))
    // A snapshot folds the writes into chunks on the storage nodes (out of the journal).
    assert.equal((await dev.cli(['snapshot', 'create', 'corrupt-check', '--volume', 'demo'])).code, 0)
    const node = (await dev.state()).nodes[2]
    assert.ok(node !== undefined)
    const segments = join(node.dataDir, 'segments')
    let flipped = 0
    for (const name of await readdir(segments)) {
      const file = join(segments, name)
      const size = (await stat(file)).size
      const fh = await open(file, 'r+')
      try {
        // One byte in every 4 KiB: every shard on this node (16 KiB each at 4+2) gets hit.
        for (let at = 2048; at < size; at += 4096, flipped++) {
          const b = Buffer.alloc(1)
          await fh.read(b, 0, 1, at)
          b[0] = (b[0] as number) ^ 0xff
          await fh.write(b, 0, 1, at)
        }
      } finally {
        await fh.close()
      }
    }
    assert.ok(flipped > 100, 'the node held shards to corrupt')
    // A fresh engine has an empty chunk cache, so the reads go to the shards.
    await dev.killEngine()
    assert.deepEqual(counts(await nbdsh(dev.uri, checkRegion(31, region, 8))), { ok: 8, err: 0, bad: 0 })
    const metrics = await fetchText(`http://${(await dev.state()).engine.adminAddress}/metrics`)
    const bad = metricSum(metrics, 'cairn_engine_bad_shards_total') - metricSum(metrics, 'cairn_engine_bad_shards_total', 'reason="unreachable"')
    assert.ok(bad > 0, 'bad shards counted')
    await waitUntil(() => dev.logs('bad shard found while reading a chunk').length > 0, 10_000, 'the bad-shard log line')
  })

  test('a second engine attaching the volume fences the first: its later writes fail and are not applied', async () => {
    assert.equal((await dev.cli(['volume', 'create', 'fenced', '--size', '64MiB'])).code, 0)
    const script = [
      'import sys',
      'h.pwrite(b"\\x41" * 65536, 0)',
      'h.flush()',
      'print("first-ok", flush=True)',
      'sys.stdin.readline()',
      'try:',
      '    h.pwrite(b"\\x42" * 65536, 1048576)',
      '    h.flush()',
      '    print("second-ok", flush=True)',
      'except nbd.Error as e:',
      '    print("second-error", e.errno, flush=True)',
    ].join('\n')
    const a = spawn('nbdsh', ['-u', dev.uriOf('fenced'), '-c', script], { env: nbdshEnv, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: string[] = []
    createInterface({ input: a.stdout }).on('line', (l) => out.push(l))
    const port = await freePort('127.0.0.1')
    const b = spawn(process.execPath, [CLI_MAIN, 'engine', '--data-dir', dev.dataDir, '--listen', `127.0.0.1:${port}`, '--metrics-listen', '127.0.0.1:0', '--node-id', 'engine-b', '--attach', 'lazy', '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    try {
      await waitUntil(() => out.includes('first-ok'), 30_000, 'the first engine to acknowledge a write and flush')
      await new Promise<void>((resolve) => b.once('message', () => resolve()))
      // Attaching through engine B takes a newer epoch; B sees A's flushed write.
      await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x41 0 65536`, `nbd://127.0.0.1:${port}/fenced`])
      a.stdin.write('go\n')
      await waitUntil(() => out.find((l) => l.startsWith('second-')), 60_000, 'the fenced write to finish')
      assert.match(out.find((l) => l.startsWith('second-')) ?? '', /^second-error (EIO|5)$/, 'the fenced engine refuses the write')
      await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0 1048576 65536`, '-c', 'read -P 0x41 0 65536', `nbd://127.0.0.1:${port}/fenced`])
    } finally {
      a.kill('SIGKILL')
      const bExit = new Promise((resolve) => b.once('exit', resolve))
      b.kill('SIGTERM')
      await Promise.race([bExit, new Promise((resolve) => setTimeout(resolve, 30_000).unref())])
      if (b.exitCode === null) b.kill('SIGKILL')
    }
  })
})
