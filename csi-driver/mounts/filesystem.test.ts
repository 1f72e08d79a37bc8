/**
 * Format-if-blank, mounts and unmounts on real loop devices over sparse files: a device
 * holding anything is never reformatted, and every mount operation is idempotent.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCommand } from '../attach/command.js'
import { bindMount, blockDeviceSizeBytes, formatIfBlank, mountDevice, mountedAt, probeDevice, unmountAll } from './filesystem.js'

const MiB = 1024 * 1024

describe('filesystem helpers on loop devices', () => {
  let work: string
  const loops: string[] = []
  const mountPoints: string[] = []

  async function loopOver(name: string, sizeBytes: number): Promise<string> {
    const file = join(work, name)
    await writeFile(file, '')
    await truncate(file, sizeBytes)
    const loop = (await runCommand('losetup', ['--find', '--show', file])).stdout.trim()
    loops.push(loop)
    return loop
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-fs-'))
  })
  after(async () => {
    for (const m of mountPoints.reverse()) await unmountAll(m).catch(() => undefined)
    for (const l of loops) await runCommand('losetup', ['-d', l]).catch(() => undefined)
    await rm(work, { recursive: true, force: true })
    assert.ok(!(await runCommand('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'])).stdout.includes(work), 'no loop device leaked')
  })

  test('a blank device is formatted once, then kept; another filesystem or a partition table is never reformatted', async () => {
    const dev = await loopOver('a.img', 64 * MiB)
    assert.equal(await probeDevice(dev), undefined)
    assert.equal(await formatIfBlank(dev, 'ext4'), 'formatted')
    assert.equal(await probeDevice(dev), 'ext4')
    assert.equal(await formatIfBlank(dev, 'ext4'), 'kept')
    await assert.rejects(formatIfBlank(dev, 'xfs'), { name: 'FilesystemMismatchError' })
    assert.equal(await probeDevice(dev), 'ext4', 'still ext4 after the refused format')

    const parted = await loopOver('b.img', 64 * MiB)
    await runCommand('sfdisk', ['--quiet', parted], { timeoutMs: 30_000 }).catch(async () => {
      // Without sfdisk, an MBR signature written by hand is the same thing to blkid.
      const mbr = Buffer.alloc(512)
      mbr.writeUInt16LE(0xaa55, 510)
      mbr[446 + 4] = 0x83
      mbr.writeUInt32LE(2048, 446 + 8)
      mbr.writeUInt32LE(4096, 446 + 12)
      await writeFile(parted, mbr, { flag: 'r+' })
    })
    assert.match(String(await probeDevice(parted)), /^other:/)
    await assert.rejects(formatIfBlank(parted, 'ext4'), { name: 'FilesystemMismatchError' })
  })

  test('mounts, read-only binds and unmounts are idempotent and honour their options', async () => {
    const dev = await loopOver('c.img', 32 * MiB)
    assert.equal(await blockDeviceSizeBytes(dev), 32 * MiB)
    await formatIfBlank(dev, 'ext4')
    const stage = join(work, 'stage')
    const ro = join(work, 'ro')
    mountPoints.push(stage, ro)
    await mountDevice(dev, stage, 'ext4', ['noatime'], false)
    await mountDevice(dev, stage, 'ext4', ['noatime'], false)
    assert.ok((await mountedAt(stage))?.mountOptions.includes('noatime'))
    await assert.rejects(mountDevice('/dev/null', stage, 'ext4', [], false), { name: 'MountConflictError' })
    await writeFile(join(stage, 'f'), 'data')
    await bindMount(stage, ro, true, false)
    await bindMount(stage, ro, true, false)
    assert.ok((await mountedAt(ro))?.mountOptions.includes('ro'))
    assert.equal(await readFile(join(ro, 'f'), 'utf8'), 'data')
    await assert.rejects(writeFile(join(ro, 'g'), 'x'), { code: 'EROFS' })
    for (const m of [ro, ro, stage, stage]) await unmountAll(m)
    assert.equal(await mountedAt(stage), undefined)
    await unmountAll(join(work, 'never-existed'))
  })
})
