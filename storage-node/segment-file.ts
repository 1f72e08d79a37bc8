/**
 * Segment files: append-only files of encoded shards, back to back. A record is
 * exactly an encoded shard (core/shard.ts), so a segment can be scanned and every
 * record verified without the index. Open handles are reference-counted so that
 * compaction can retire a segment while reads of it are still in flight.
 */
import { constants, readSync } from 'node:fs'
import { open, readdir, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeShard, decodeShardHeader, SHARD_CID_MAX_BYTES, SHARD_FIXED_HEADER_BYTES } from '../core/shard.js'
import { assert } from '../core/errors.js'

const SEGMENT_NAME = /^(\d{6,})\.seg$/

export function segmentFileName(id: number): string {
  return `${String(id).padStart(6, '0')}.seg`
}

/** Segment ids of the `*.seg` files in `dir`. */
export async function listSegmentFiles(dir: string): Promise<number[]> {
  const ids: number[] = []
  for (const name of await readdir(dir)) {
    const match = SEGMENT_NAME.exec(name)
    if (match) ids.push(Number(match[1]))
  }
  return ids.sort((a, b) => a - b)
}

/** fsyncs a directory so that file creations and unlinks in it survive power loss. */
export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export class SegmentFile {
  private refs = 1
  private retired = false
  private closing: Promise<unknown> | undefined
  /** A second descriptor opened with O_DSYNC, for durable appends; opened on first use. */
  private appender: FileHandle | undefined

  private constructor(
    readonly id: number,
    readonly path: string,
    readonly handle: FileHandle,
  ) {}

  /** Opens segment `id` in `dir` for reading and appending; `create` makes a new empty file. */
  static async open(dir: string, id: number, create: boolean): Promise<SegmentFile> {
    const path = join(dir, segmentFileName(id))
    // 'wx+' fails if the file exists: a new segment id is never reused.
    const handle = await open(path, create ? 'wx+' : 'r+')
    return new SegmentFile(id, path, handle)
  }

  /** Takes a reference for a read; pair with release(). False once retired. */
  acquire(): boolean {
    if (this.retired) return false
    this.refs += 1
    return true
  }

  release(): void {
    assert(this.refs > 0, `segment ${this.id} released more than acquired`)
    this.refs -= 1
    if (this.refs === 0) this.closing = Promise.all([this.handle.close(), this.appender?.close()])
  }

  /** Drops the owner's reference: the file closes once the last reader releases it. */
  async retire(): Promise<void> {
    if (this.retired) return
    this.retired = true
    this.release()
    await this.closing
  }

  /**
   * Writes `buffers` at `positionBytes` and returns once they are durable, as write plus
   * fdatasync would, but in one thread-pool round trip instead of two: the descriptor is
   * opened with O_DSYNC. Each hop costs a thread wake-up, which on a busy machine waits
   * for a CPU. Only the store's single writer calls this.
   * @returns the bytes written
   */
  async writeDurably(buffers: readonly Uint8Array[], positionBytes: number): Promise<number> {
    assert(!this.retired, `segment ${this.id} written after it was retired`)
    this.appender ??= await open(this.path, constants.O_WRONLY | constants.O_DSYNC)
    const { bytesWritten } = await this.appender.writev(buffers as Uint8Array[], positionBytes)
    return bytesWritten
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(lengthBytes)
    let done = 0
    while (done < lengthBytes) {
      const { bytesRead } = await this.handle.read(buffer, done, lengthBytes - done, offsetBytes + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return done === lengthBytes ? buffer : buffer.subarray(0, done)
  }

  /**
   * Reads on the calling thread. For page-cache hits this is several times faster than
   * a thread-pool round trip; a miss blocks the event loop for one device read.
   */
  readNow(offsetBytes: number, lengthBytes: number): Buffer {
    const buffer = slabAlloc(lengthBytes)
    let done = 0
    while (done < lengthBytes) {
      const bytesRead = readSync(this.handle.fd, buffer, done, lengthBytes - done, offsetBytes + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return done === lengthBytes ? buffer : buffer.subarray(0, done)
  }

  async sizeBytes(): Promise<number> {
    return (await this.handle.stat()).size
  }
}

/** A record found by scanning a segment. */
export interface ScannedRecord {
  offsetBytes: number
  lengthBytes: number
  chunkCid: Uint8Array
  index: number
}

/**
 * Reads records from `fromBytes` while each one fully verifies, and stops at the first
 * that does not (a torn or never-finished write). Used only on the tail of the active
 * segment past its committed size, to roll forward records whose fsync completed but
 * whose index commit was lost.
 * @returns the verified records and the offset just past the last of them.
 */
export async function scanRecords(segment: SegmentFile, fromBytes: number, endBytes: number): Promise<{ records: ScannedRecord[]; endOffsetBytes: number }> {
  const records: ScannedRecord[] = []
  let offset = fromBytes
  const maxHeader = SHARD_FIXED_HEADER_BYTES + SHARD_CID_MAX_BYTES
  while (offset + SHARD_FIXED_HEADER_BYTES <= endBytes) {
    try {
      const head = await segment.read(offset, Math.min(maxHeader, endBytes - offset))
      const { header, headerBytes } = decodeShardHeader(head)
      const lengthBytes = headerBytes + header.payloadLengthBytes
      if (offset + lengthBytes > endBytes) break
      const shard = decodeShard(await segment.read(offset, lengthBytes))
      records.push({ offsetBytes: offset, lengthBytes, chunkCid: Uint8Array.from(shard.header.chunkCid), index: shard.header.index })
      offset += lengthBytes
    } catch {
      break
    }
  }
  return { records, endOffsetBytes: offset }
}

const SLAB_BYTES = 1024 * 1024
let slab = Buffer.allocUnsafeSlow(0)
let slabUsed = 0

/**
 * Carves read buffers out of 1 MiB slabs, as Node's own pool does for small buffers:
 * allocating a fresh 16 KiB ArrayBuffer per read costs as much as the read itself.
 * A slab lives until every shard cut from it is garbage.
 */
function slabAlloc(lengthBytes: number): Buffer {
  if (lengthBytes > SLAB_BYTES / 4) return Buffer.allocUnsafe(lengthBytes)
  if (slabUsed + lengthBytes > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
    slabUsed = 0
  }
  const out = slab.subarray(slabUsed, slabUsed + lengthBytes)
  // Keep the next buffer 8-byte aligned so typed-array views over shards stay cheap.
  slabUsed += (lengthBytes + 7) & ~7
  return out
}
