/**
 * Filesystems and mounts on the node: probe, format only when blank, mount with the
 * requested flags, bind mounts (read-only honoured), unmount, grow, statistics.
 * Every operation is idempotent against /proc/self/mountinfo.
 */
import { mkdir, open, statfs } from 'node:fs/promises'
import { dirname } from 'node:path'
import { CairnError } from '../../core/errors.js'
import { runCommand } from '../attach/command.js'
import { mountAt, readMounts, type MountEntry } from './mountinfo.js'

export type FsType = 'ext4' | 'xfs'
export const FS_TYPES: readonly FsType[] = ['ext4', 'xfs']

/** The device holds something other than the filesystem asked for; it is never reformatted. */
export class FilesystemMismatchError extends CairnError {
  override readonly name = 'FilesystemMismatchError'
  readonly kind = 'failed-precondition'
}

/** A path is already a mount of something else. */
export class MountConflictError extends CairnError {
  override readonly name = 'MountConflictError'
  readonly kind = 'already-exists'
}

/** mkfs of a large device and mounts that replay a journal take a while. */
const MKFS_TIMEOUT_MS = 300_000
const MOUNT_TIMEOUT_MS = 120_000
/** Stacked mounts at one path that an unmount undoes before giving up. */
const UNMOUNT_LAYERS_MAX = 8

/**
 * What `blkid -p` finds on the device: a filesystem type, another signature (partition
 * table, RAID member…) as `other:<what>`, or undefined when the device is blank.
 */
export async function probeDevice(device: string): Promise<string | undefined> {
  // Exit 2 means "no signature found": a blank device.
  const result = await runCommand('blkid', ['-p', '-o', 'export', device], { okExitCodes: [0, 2] })
  if (result.exitCode === 2) return undefined
  const fields = new Map(result.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  const type = fields.get('TYPE')
  if (type !== undefined) return type
  return `other:${fields.get('PTTYPE') ?? [...fields.keys()].join('+')}`
}

/** Formats `device` as `fsType` only if it is blank; an existing filesystem of that type is kept. */
export async function formatIfBlank(device: string, fsType: FsType): Promise<'formatted' | 'kept'> {
  const found = await probeDevice(device)
  if (found === fsType) return 'kept'
  if (found !== undefined) throw new FilesystemMismatchError(`${device} holds ${found}, not ${fsType}; refusing to format a device that is not blank`)
  // -E nodiscard / -K: discarding a fresh thin volume is wasted round trips (it reads as zeros already).
  const args = fsType === 'ext4' ? ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', device] : ['-q', '-K', device]
  await runCommand(`mkfs.${fsType}`, args, { timeoutMs: MKFS_TIMEOUT_MS })
  return 'formatted'
}

/** The topmost mount at `path`, if any. */
export async function mountedAt(path: string): Promise<MountEntry | undefined> {
  return mountAt(await readMounts(), path)
}

/** Mounts `device` (formatted `fsType`) at `target` with `flags`; a mount already there of the same device is kept. */
export async function mountDevice(device: string, target: string, fsType: FsType, flags: readonly string[], readOnly: boolean): Promise<void> {
  await mkdir(target, { recursive: true })
  const existing = await mountedAt(target)
  if (existing !== undefined) {
    if (existing.source === device) return
    throw new MountConflictError(`${target} already has ${existing.source} mounted, not ${device}`)
  }
  const options = [...flags, ...(readOnly ? ['ro'] : [])]
  await runCommand('mount', ['-t', fsType, ...(options.length > 0 ? ['-o', options.join(',')] : []), device, target], { timeoutMs: MOUNT_TIMEOUT_MS })
}

/**
 * Bind-mounts `source` (a directory, or a device node for raw block) at `target`,
 * creating the target directory or file. Read-only needs a remount: the kernel
 * ignores `ro` on the bind itself.
 */
export async function bindMount(source: string, target: string, readOnly: boolean, targetIsFile: boolean): Promise<void> {
  if (targetIsFile) {
    await mkdir(dirname(target), { recursive: true })
    await (await open(target, 'a')).close()
  } else {
    await mkdir(target, { recursive: true })
  }
  if ((await mountedAt(target)) === undefined) await runCommand('mount', ['--bind', source, target], { timeoutMs: MOUNT_TIMEOUT_MS })
  const now = await mountedAt(target)
  if (readOnly && now !== undefined && !now.mountOptions.includes('ro')) {
    await runCommand('mount', ['-o', 'remount,bind,ro', target], { timeoutMs: MOUNT_TIMEOUT_MS })
  }
}

/** Unmounts everything stacked at `target`; a path with nothing mounted (or missing) is fine. */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < UNMOUNT_LAYERS_MAX; i++) {
    if ((await mountedAt(target)) === undefined) return
    await runCommand('umount', [target], { timeoutMs: MOUNT_TIMEOUT_MS })
  }
  throw new MountConflictError(`${target} still has mounts after ${UNMOUNT_LAYERS_MAX} unmounts`)
}

/** Size of a block device in bytes. */
export async function blockDeviceSizeBytes(device: string): Promise<number> {
  const out = await runCommand('blockdev', ['--getsize64', device])
  return Number(out.stdout.trim())
}

/** Grows the filesystem mounted at `mountPath` on `device` to fill the device. */
export async function growFilesystem(device: string, mountPath: string, fsType: FsType): Promise<void> {
  if (fsType === 'ext4') await runCommand('resize2fs', [device], { timeoutMs: MKFS_TIMEOUT_MS })
  else await runCommand('xfs_growfs', [mountPath], { timeoutMs: MKFS_TIMEOUT_MS })
}

/** Size of the ext4 filesystem on `device` (block count × block size, from its superblock). */
export async function ext4SizeBytes(device: string): Promise<number> {
  const out = (await runCommand('dumpe2fs', ['-h', device])).stdout
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(out)?.[1] ?? NaN)
  return field('Block count') * field('Block size')
}

/**
 * Grows an unmounted ext4 filesystem to fill its device when the device is larger.
 * Offline, because online growth needs CAP_SYS_RESOURCE, which containers often lack.
 */
export async function growExt4Offline(device: string): Promise<boolean> {
  if ((await ext4SizeBytes(device)) >= (await blockDeviceSizeBytes(device))) return false
  // resize2fs insists on a freshly checked filesystem; -p repairs only what is safe. Exit 1 = errors corrected.
  await runCommand('e2fsck', ['-f', '-p', device], { timeoutMs: MKFS_TIMEOUT_MS, okExitCodes: [0, 1] })
  await runCommand('resize2fs', [device], { timeoutMs: MKFS_TIMEOUT_MS })
  return true
}

export interface FilesystemUsage {
  totalBytes: number
  availableBytes: number
  usedBytes: number
  totalInodes: number
  freeInodes: number
  usedInodes: number
}

/** statfs of a mounted path: bytes and inodes. */
export async function filesystemUsage(path: string): Promise<FilesystemUsage> {
  const s = await statfs(path)
  return {
    totalBytes: s.blocks * s.bsize,
    availableBytes: s.bavail * s.bsize,
    usedBytes: (s.blocks - s.bfree) * s.bsize,
    totalInodes: s.files,
    freeInodes: s.ffree,
    usedInodes: s.files - s.ffree,
  }
}
