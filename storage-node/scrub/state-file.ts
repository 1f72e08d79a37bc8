/**
 * Small JSON state files (scrub and repair cursors and counters) written
 * atomically: a temporary file is written and fsynced, renamed over the old
 * one, and the directory fsynced, so a crash leaves either the old state or
 * the new one, never a torn mix.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import { CairnError } from '../../core/errors.js'

/** A state file exists but does not parse or fails its schema check. */
export class StateFileError extends CairnError {
  override readonly name = 'StateFileError'
  readonly kind = 'data-loss'
}

/**
 * The parsed content of `path`, or undefined when the file does not exist.
 * @throws StateFileError when it is not JSON or `check` refuses it
 */
export async function readStateFile<T>(path: string, check: (value: unknown) => T | undefined): Promise<T | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new StateFileError(`state file ${path} is not JSON`, { cause: err })
  }
  const checked = check(value)
  if (checked === undefined) throw new StateFileError(`state file ${path} does not match its schema`)
  return checked
}

/** Replaces `path` with `value` as JSON, durably and atomically. */
export async function writeStateFile(path: string, value: unknown): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true })
  const tmp = `${path}.tmp`
  const file = await open(tmp, 'w')
  try {
    await file.writeFile(`${JSON.stringify(value)}\n`)
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(tmp, path)
  const dirHandle = await open(dir, 'r')
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
}

/** Whether `value` is a plain object whose listed keys are all finite non-negative numbers. */
export function hasCounters(value: unknown, keys: readonly string[]): value is Record<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const record = value as Record<string, unknown>
  return keys.every((k) => typeof record[k] === 'number' && Number.isFinite(record[k]) && (record[k] as number) >= 0)
}
