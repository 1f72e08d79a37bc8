/**
 * Turns a volume served on the engine's Unix socket into a block device: the kernel
 * nbd driver when /dev/nbd* exists, else nbdfuse (the export as a file) plus a loop
 * device. Every step can be found again from deterministic paths, so a plugin that
 * crashed halfway can finish or undo it.
 */
import { spawn } from 'node:child_process'
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CairnError } from '../../core/errors.js'
import { runCommand } from './command.js'
import { processAlive, waitFor } from './process.js'

export type AttachMode = 'nbd' | 'fuse'

/** The export could not be made a block device. */
export class AttachFailedError extends CairnError {
  override readonly name = 'AttachFailedError'
  readonly kind = 'unavailable'
}

/** How long nbdfuse may take to connect and expose the file. */
const NBDFUSE_READY_MS = 60_000
const NBDFUSE_EXIT_MS = 60_000

/** `nbd` when the kernel nbd driver has devices here, else `fuse`. */
export async function detectAttachMode(): Promise<AttachMode> {
  const devices = await readdir('/dev').catch(() => [] as string[])
  return devices.some((d) => /^nbd\d+$/.test(d)) ? 'nbd' : 'fuse'
}

export interface AttachTarget {
  exportName: string
  socketPath: string
  /** Per-volume directory: the FUSE mount point lives below it. */
  volumeDir: string
  /**
   * The volume's size, when the export advertises more (engine/nbd/growable.ts): the
   * loop device is limited to it and raised by {@link setLoopSizeLimit} when the
   * volume grows. @default the export's size
   */
  sizeLimitBytes?: number
}

/** The FUSE mount point of a volume and the file nbdfuse exposes in it. */
export function fusePaths(volumeDir: string): { dir: string; file: string; pidFile: string; log: string } {
  return { dir: join(volumeDir, 'fuse'), file: join(volumeDir, 'fuse', 'nbd'), pidFile: join(volumeDir, 'nbdfuse.pid'), log: join(volumeDir, 'nbdfuse.log') }
}

/** Attaches and returns the device path. Idempotent: a device already attached for this target is returned. */
export async function attachBlockDevice(mode: AttachMode, target: AttachTarget): Promise<string> {
  return mode === 'nbd' ? attachKernelNbd(target) : attachFuseLoop(target)
}

/** Undoes attachBlockDevice; every step is skipped when already undone. */
export async function detachBlockDevice(mode: AttachMode, target: AttachTarget, device: string | undefined): Promise<void> {
  if (mode === 'nbd') {
    if (device !== undefined && (await nbdConnected(device))) await runCommand('nbd-client', ['-d', device])
    return
  }
  await detachFuseLoop(target.volumeDir)
}

async function attachFuseLoop(target: AttachTarget): Promise<string> {
  const paths = fusePaths(target.volumeDir)
  const existing = await loopDevicesOf(paths.file)
  if (existing[0] !== undefined) return existing[0]
  if (!(await fuseServing(target.volumeDir))) await startNbdfuse(target)
  const limit = target.sizeLimitBytes === undefined ? [] : ['--sizelimit', String(target.sizeLimitBytes)]
  // Direct I/O skips a second page cache over the FUSE file; a kernel that cannot do it falls back.
  const out = await runCommand('losetup', ['--find', '--show', '--direct-io=on', ...limit, paths.file]).catch(() => runCommand('losetup', ['--find', '--show', ...limit, paths.file]))
  return out.stdout.trim()
}

async function startNbdfuse(target: AttachTarget): Promise<void> {
  const paths = fusePaths(target.volumeDir)
  await mkdir(paths.dir, { recursive: true })
  await rm(paths.pidFile, { force: true })
  const uri = `nbd+unix:///${encodeURIComponent(target.exportName)}?socket=${target.socketPath}`
  const log = await open(paths.log, 'a')
  try {
    const child = spawn('nbdfuse', ['-P', paths.pidFile, `${paths.dir}/nbd`, uri], { detached: true, stdio: ['ignore', log.fd, log.fd] })
    child.unref()
    let exited = false
    child.once('exit', () => (exited = true))
    child.once('error', () => (exited = true))
    const ready = await waitFor(async () => (exited ? false : (await stat(paths.pidFile).then(() => true, () => undefined))), NBDFUSE_READY_MS)
    if (ready !== true) {
      if (!exited && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
      const tail = (await readFile(paths.log, 'utf8').catch(() => '')).slice(-2000)
      throw new AttachFailedError(`nbdfuse did not expose ${target.exportName}: ${tail}`)
    }
  } finally {
    await log.close()
  }
}

/** True when a FUSE filesystem is mounted at the volume's fuse dir. */
async function fuseServing(volumeDir: string): Promise<boolean> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  return mountinfo.split('\n').some((l) => l.split(' ')[4] === fusePaths(volumeDir).dir)
}

/** Loop devices whose backing file is `file`. */
export async function loopDevicesOf(file: string): Promise<string[]> {
  const out = await runCommand('losetup', ['--associated', file, '--noheadings', '--output', 'NAME'])
  return out.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '')
}

async function detachFuseLoop(volumeDir: string): Promise<void> {
  const paths = fusePaths(volumeDir)
  if (await stat(paths.file).then(() => true, () => false)) {
    for (const loop of await loopDevicesOf(paths.file)) {
      await runCommand('blockdev', ['--flushbufs', loop]).catch(() => undefined)
      await runCommand('losetup', ['-d', loop])
    }
  }
  const pid = Number((await readFile(paths.pidFile, 'utf8').catch(() => '')).trim())
  if (await fuseServing(volumeDir)) await runCommand('fusermount3', ['-u', paths.dir])
  // nbdfuse flushes and disconnects when unmounted; wait so the engine sees the clean close.
  if (Number.isSafeInteger(pid) && pid > 0 && processAlive(pid)) {
    const gone = await waitFor(() => (processAlive(pid) ? undefined : true), NBDFUSE_EXIT_MS)
    if (gone !== true) process.kill(pid, 'SIGKILL')
  }
  await rm(paths.pidFile, { force: true })
}

/** Re-reads the backing file's size into the loop device (after the volume grew). */
export async function refreshLoopCapacity(device: string): Promise<void> {
  await runCommand('losetup', ['--set-capacity', device])
}

/**
 * Raises a loop device's size limit while it stays attached and mounted: the
 * LOOP_SET_STATUS64 ioctl with a new lo_sizelimit, which the kernel applies at once
 * (util-linux offers it only at setup, and Node has no ioctl, so python3 issues it).
 * struct loop_info64 is 232 bytes; lo_sizelimit is the u64 at offset 32. EAGAIN
 * (pages still cached on older kernels) is retried.
 */
export async function setLoopSizeLimit(device: string, sizeLimitBytes: number): Promise<void> {
  const script = [
    'import errno, fcntl, os, struct, sys, time',
    'fd = os.open(sys.argv[1], os.O_RDWR)',
    'info = bytearray(232)',
    'fcntl.ioctl(fd, 0x4C05, info, True)',
    "struct.pack_into('<Q', info, 32, int(sys.argv[2]))",
    'for attempt in range(20):',
    '    try:',
    '        fcntl.ioctl(fd, 0x4C04, bytes(info)); break',
    '    except OSError as e:',
    '        if e.errno != errno.EAGAIN or attempt == 19: raise',
    '        time.sleep(0.1)',
  ].join('\n')
  await runCommand('python3', ['-c', script, device, String(sizeLimitBytes)])
}

async function nbdConnected(device: string): Promise<boolean> {
  return stat(`/sys/block/${device.replace('/dev/', '')}/pid`).then(() => true, () => false)
}

async function attachKernelNbd(target: AttachTarget): Promise<string> {
  const devices = (await readdir('/dev')).filter((d) => /^nbd\d+$/.test(d)).sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)))
  for (const name of devices) {
    const device = `/dev/${name}`
    if (await nbdConnected(device)) continue
    // nbd-client(8): `-unix PATH DEVICE -name EXPORT`; a device another client took meanwhile fails and the next is tried.
    const result = await runCommand('nbd-client', ['-unix', target.socketPath, device, '-name', target.exportName], { okExitCodes: [0, 1] })
    if (result.exitCode === 0) return device
  }
  throw new AttachFailedError(`no free /dev/nbd* device could connect to ${target.exportName}`)
}
