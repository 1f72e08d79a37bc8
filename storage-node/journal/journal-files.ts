/**
 * A volume's journal directory on disk: `state.json` (highest epoch, checkpoint,
 * tombstone) replaced atomically, and segment files `<firstSeq>.log` of records
 * back to back. Loading scans every segment, verifies each record and repairs a
 * torn tail; why that is safe is in docs/adr/0009-journal.md.
 */
import { open, readdir, readFile, rename, truncate, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../core/logger.js'
import { syncDirectory } from '../segment-file.js'
import { decodeRecordHeader, recordIntact, RECORD_HEADER_BYTES } from './record.js'

/** State up to `seq` lives in the chunk store under `rootCid`. */
export interface CheckpointState {
  rootCid: string | null
  sizeBytes: number
  seq: number
}

export interface JournalStateFile {
  version: 1
  highestEpoch: number
  checkpoint: CheckpointState | null
  /** A tombstone: the volume was deleted; nothing may open it again. */
  dropped: boolean
}

/** One segment file as found by the scan, with the offset of each record (index = seq - firstSeq). */
export interface SegmentInfo {
  firstSeq: number
  /** firstSeq - 1 while the segment holds no record. */
  lastSeq: number
  /** Epoch of the last record (0 when empty). */
  lastEpoch: number
  path: string
  sizeBytes: number
  offsets: number[]
}

const STATE_FILE = 'state.json'
export const SEGMENT_NAME = /^(\d{16})\.log$/

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.log`
}

export function emptyState(): JournalStateFile {
  return { version: 1, highestEpoch: 0, checkpoint: null, dropped: false }
}

/** The state file, or undefined when the directory holds none. */
export async function readState(dir: string): Promise<JournalStateFile | undefined> {
  let text: string
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const parsed = JSON.parse(text) as JournalStateFile
  if (parsed.version !== 1 || !Number.isSafeInteger(parsed.highestEpoch)) throw new Error(`${join(dir, STATE_FILE)}: unknown state format`)
  return parsed
}

/** Replaces the state file atomically and durably: write a temp file, fsync, rename, fsync the directory. */
export async function writeState(dir: string, state: JournalStateFile): Promise<void> {
  const tmp = join(dir, `${STATE_FILE}.tmp`)
  const fh = await open(tmp, 'w')
  try {
    await fh.writeFile(JSON.stringify(state))
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, join(dir, STATE_FILE))
  await syncDirectory(dir)
}

/** First seqs of the segment files in `dir`, ascending. */
export async function listSegments(dir: string): Promise<number[]> {
  const seqs: number[] = []
  for (const name of await readdir(dir)) {
    const match = SEGMENT_NAME.exec(name)
    if (match) seqs.push(Number(match[1]))
  }
  return seqs.sort((a, b) => a - b)
}

/**
 * Reads a segment and indexes its records while each one is intact and continues the
 * sequence (seq = previous + 1, epoch not decreasing). Stops at the first that does not.
 * @returns the segment and `validBytes`, the length of its good prefix.
 */
export async function scanSegment(path: string, firstSeq: number, prevEpoch: number): Promise<{ segment: SegmentInfo; validBytes: number; fileBytes: number }> {
  const bytes = await readFile(path)
  const offsets: number[] = []
  let offset = 0
  let seq = firstSeq - 1
  let epoch = prevEpoch
  while (offset + RECORD_HEADER_BYTES <= bytes.length) {
    const header = decodeRecordHeader(bytes.subarray(offset, offset + RECORD_HEADER_BYTES))
    if (header === undefined || header.seq !== seq + 1 || header.epoch < epoch || header.op === 0) break
    const end = offset + RECORD_HEADER_BYTES + header.payloadBytes
    if (end > bytes.length || !recordIntact(bytes.subarray(offset, end), header)) break
    offsets.push(offset)
    seq = header.seq
    epoch = header.epoch
    offset = end
  }
  const segment: SegmentInfo = { firstSeq, lastSeq: seq, lastEpoch: offsets.length > 0 ? epoch : 0, path, sizeBytes: offset, offsets }
  return { segment, validBytes: offset, fileBytes: bytes.length }
}

/**
 * Loads every segment of `dir`. A bad record in the last segment is a torn write of
 * an unacknowledged record: the file is cut there (and fsynced). A bad record in an
 * earlier segment is corruption: the good prefix is kept and the later segments are
 * renamed `*.corrupt` (kept for inspection, never served), which other replicas cover.
 */
export async function loadSegments(dir: string, logger: Logger): Promise<SegmentInfo[]> {
  const firstSeqs = await listSegments(dir)
  const segments: SegmentInfo[] = []
  let prevEpoch = 0
  for (let i = 0; i < firstSeqs.length; i++) {
    const firstSeq = firstSeqs[i] as number
    const path = join(dir, segmentName(firstSeq))
    const prev = segments.at(-1)
    const continues = prev === undefined || firstSeq === prev.lastSeq + 1
    const { segment, validBytes, fileBytes } = continues ? await scanSegment(path, firstSeq, prevEpoch) : { segment: undefined, validBytes: 0, fileBytes: -1 }
    if (segment !== undefined && segment.offsets.length > 0) {
      segments.push(segment)
      prevEpoch = segment.lastEpoch
    }
    if (segment !== undefined && validBytes === fileBytes) {
      // An empty file: a crash right after the segment was created. Its name must be reusable.
      if (segment.offsets.length === 0) await unlink(path)
      continue
    }
    const isLast = i === firstSeqs.length - 1
    if (isLast && segment !== undefined) {
      logger.warn({ path, validBytes, fileBytes }, 'journal segment has a torn tail; truncating it')
      if (segment.offsets.length > 0) {
        await truncate(path, validBytes)
        const fh = await open(path, 'r+')
        await fh.sync()
        await fh.close()
      } else await unlink(path)
    } else {
      logger.error({ path, validBytes, fileBytes }, 'journal segment is corrupt before its tail; setting it and later segments aside')
      if (segment !== undefined && segment.offsets.length > 0) await truncateCopyAside(path, validBytes)
      else await rename(path, `${path}.corrupt`)
      for (const later of firstSeqs.slice(i + 1)) await rename(join(dir, segmentName(later)), join(dir, `${segmentName(later)}.corrupt`))
    }
    await syncDirectory(dir)
    break
  }
  return segments
}

/** Keeps a copy of the whole damaged file for inspection, then cuts the original to its good prefix. */
async function truncateCopyAside(path: string, validBytes: number): Promise<void> {
  await writeFile(`${path}.corrupt`, await readFile(path))
  await truncate(path, validBytes)
  const fh = await open(path, 'r+')
  await fh.sync()
  await fh.close()
}

/** Bytes in the segment files under `root` (one directory per volume), for the disk gauge at start. */
export async function journalDiskBytes(root: string): Promise<number> {
  let total = 0
  let volumes: string[]
  try {
    volumes = await readdir(root)
  } catch {
    return 0
  }
  for (const volume of volumes) {
    let names: string[]
    try {
      names = await readdir(join(root, volume))
    } catch {
      continue
    }
    for (const name of names) {
      if (!SEGMENT_NAME.test(name)) continue
      const fh = await open(join(root, volume, name), 'r')
      total += (await fh.stat()).size
      await fh.close()
    }
  }
  return total
}
