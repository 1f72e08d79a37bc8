/**
 * /proc/self/mountinfo parsing: what is mounted where, so that every mount and
 * unmount the node plugin does can be made idempotent (proc(5) describes the format).
 */
import { readFile } from 'node:fs/promises'
import { InvalidArgumentError } from '../../core/errors.js'

export interface MountEntry {
  mountId: number
  parentId: number
  /** `major:minor` of the filesystem's device. */
  device: string
  /** Path inside the filesystem that is mounted here (`/` for a whole filesystem; a file for a bind of one). */
  root: string
  mountPoint: string
  /** Per-mount options (`rw`, `ro`, `nosuid`…). */
  mountOptions: string[]
  fsType: string
  source: string
  superOptions: string[]
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** Parses one mountinfo line. @throws InvalidArgumentError on a malformed line. */
export function parseMountInfoLine(line: string): MountEntry {
  const fields = line.split(' ')
  const dash = fields.indexOf('-', 6)
  if (fields.length < 10 || dash < 0 || fields.length < dash + 4) throw new InvalidArgumentError(`malformed mountinfo line: ${JSON.stringify(line)}`)
  const [mountId, parentId, device, root, mountPoint, options] = fields as [string, string, string, string, string, string]
  return {
    mountId: Number(mountId),
    parentId: Number(parentId),
    device,
    root: unescape(root),
    mountPoint: unescape(mountPoint),
    mountOptions: options.split(','),
    fsType: fields[dash + 1] as string,
    source: unescape(fields[dash + 2] as string),
    superOptions: (fields[dash + 3] as string).split(','),
  }
}

/** Parses a whole mountinfo text; blank lines are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  return text.split('\n').filter((l) => l.trim() !== '').map(parseMountInfoLine)
}

/** The mounts of this process's mount namespace, in mount order. */
export async function readMounts(path = '/proc/self/mountinfo'): Promise<MountEntry[]> {
  return parseMountInfo(await readFile(path, 'utf8'))
}

/** The topmost mount at `mountPoint` (the one a path lookup sees), or undefined. */
export function mountAt(mounts: readonly MountEntry[], mountPoint: string): MountEntry | undefined {
  for (let i = mounts.length - 1; i >= 0; i--) {
    if (mounts[i]?.mountPoint === mountPoint) return mounts[i]
  }
  return undefined
}
