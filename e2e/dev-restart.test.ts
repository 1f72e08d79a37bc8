/**
 * State survives a restart of `cairn dev`: an ext4 filesystem made and mounted through
 * nbdfuse and a loop device, and a fio crc32c-verified random-write pattern.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run, runOk } from '../engine/nbd/testing.js'
import { Dev, MiB, patterned, waitUntil } from './harness.js'

/** nbdfuse + loop device + mount of a volume; `close` undoes what was done, in reverse, and never throws. */
class FuseMount {
  private nbdfuse: ChildProcess | undefined
  private loop: string | undefined
  private mounted = false

  constructor(
    readonly fuseDir: string,
    readonly mountDir: string,
  ) {}

  /** Exposes the volume as a file, attaches a loop device, optionally formats, and mounts it. */
  async open(uri: string, format: boolean): Promise<void> {
    await mkdir(this.fuseDir, { recursive: true })
    await mkdir(this.mountDir, { recursive: true })
    const file = join(this.fuseDir, 'disk')
    this.nbdfuse = spawn('nbdfuse', [file, uri], { stdio: 'ignore' })
    await waitUntil(() => access(file).then(() => true), 30_000, 'nbdfuse to expose the volume')
    this.loop = (await runOk('losetup', ['-f', '--show', file])).trim()
    if (format) await runOk('mkfs.ext4', ['-q', '-F', this.loop], 120_000)
    await runOk('mount', ['-t', 'ext4', this.loop, this.mountDir])
    this.mounted = true
  }

  async close(): Promise<void> {
    // A busy mount (writeback still draining on a loaded machine) gets a lazy unmount rather than a leak.
    if (this.mounted && (await run('umount', [this.mountDir], 120_000)).code !== 0) await run('umount', ['-l', this.mountDir])
    this.mounted = false
    if (this.loop !== undefined) await run('losetup', ['-d', this.loop])
    this.loop = undefined
    const fuse = this.nbdfuse
    this.nbdfuse = undefined
    if (fuse !== undefined && fuse.exitCode === null) {
      const exited = new Promise((resolve) => fuse.once('exit', resolve))
      if ((await run('fusermount3', ['-u', this.fuseDir])).code !== 0) await run('fusermount3', ['-uz', this.fuseDir])
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000).unref())])
      if (fuse.exitCode === null) fuse.kill('SIGKILL')
    }
  }
}

describe('cairn dev state survives a restart', () => {
  let work: string
  const devs: Dev[] = []

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-e2e-restart-'))
  })
  after(async () => {
    // Restarted devs share a data dir: stop every one before deleting any directory.
    for (const d of devs) await d.kill()
    for (const dir of new Set(devs.map((d) => d.dataDir))) await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    await rm(work, { recursive: true, force: true })
  })

  async function restart(dev: Dev): Promise<Dev> {
    assert.equal(await dev.stop(), 0, 'cairn dev exits 0 on SIGTERM')
    const next = await Dev.start({ dataDir: dev.dataDir, port: dev.port })
    devs.push(next)
    return next
  }

  test('a tree written to ext4 over nbdfuse and a loop device is intact after a restart', async () => {
    let dev = await Dev.start({ size: '256MiB' })
    devs.push(dev)
    const fuse = new FuseMount(join(work, 'fuse'), join(work, 'mnt'))
    const files: Record<string, Buffer> = {
      'readme.txt': Buffer.from('cairn keeps this\n'),
      'dir/blob.bin': patterned(3 * MiB + 17, 21),
      'dir/sub/small.bin': patterned(4096 * 3 + 5, 22),
    }
    try {
      await fuse.open(dev.uri, true)
      await mkdir(join(fuse.mountDir, 'dir/sub'), { recursive: true })
      for (const [name, data] of Object.entries(files)) await writeFile(join(fuse.mountDir, name), data)
      await runOk('sync', [])
      await fuse.close()
      dev = await restart(dev)
      await fuse.open(dev.uri, false)
      for (const [name, data] of Object.entries(files)) {
        assert.ok((await readFile(join(fuse.mountDir, name))).equals(data), `${name} intact`)
      }
    } finally {
      await fuse.close()
    }
  })

  test('fio random writes verified with crc32c, then verified again after a restart', async () => {
    let dev = await Dev.start({ size: '128MiB' })
    devs.push(dev)
    const common = (uri: string) => [
      '--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=32', '--size=16M',
      '--verify=crc32c', '--randseed=4242', '--verify_state_save=0', '--output-format=json',
    ]
    const json = (out: string) => JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }> }
    const first = json(await runOk('fio', [...common(dev.uri), '--do_verify=1'], 120_000))
    assert.equal(first.jobs[0]?.error, 0)
    assert.equal(first.jobs[0]?.write.io_bytes, 16 * MiB)
    dev = await restart(dev)
    const again = json(await runOk('fio', [...common(dev.uri), '--verify_only'], 120_000))
    assert.equal(again.jobs[0]?.error, 0)
    assert.equal(again.jobs[0]?.read.io_bytes, 16 * MiB, 'the verify-only pass read every block back')
  })
})
