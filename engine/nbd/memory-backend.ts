/**
 * A sparse in-memory NBD backend for tests and `cairn dev` bring-up.
 *
 * Pages are allocated on first write and freed by TRIM and WRITE_ZEROES, so
 * base:allocation reports real holes. Every change is applied before the promise
 * resolves and the page map is shared by all connections, which makes FLUSH
 * trivially cover writes from every connection (CAN_MULTI_CONN holds).
 */
import { InvalidArgumentError, ResourceExhaustedError, assert } from '../../core/errors.js'
import {
  DEFAULT_BLOCK_SIZE,
  validateBlockSize,
  type BlockSizeConstraints,
  type Extent,
  type NbdBackend,
  type WriteOptions,
  type ZeroOptions,
} from './backend.js'
import { FastZeroUnsupportedError } from './errors.js'

export interface MemoryBackendInit {
  sizeBytes: number
  /**
   * Allocation granularity; also the preferred block size advertised.
   * @default 4096
   */
  pageSizeBytes?: number
  /**
   * Most bytes of pages that may be allocated at once; writes beyond it fail with
   * ResourceExhaustedError (ENOSPC on the wire). Never more than `sizeBytes` rounded up to a page.
   * @default sizeBytes
   */
  capacityBytes?: number
  /** @default false */
  readOnly?: boolean
  /** @default DEFAULT_BLOCK_SIZE with preferredBytes = pageSizeBytes */
  blockSize?: BlockSizeConstraints
  /** @default 'in-memory volume' */
  description?: string
}

export class MemoryBackend implements NbdBackend {
  readonly sizeBytes: number
  readonly isReadOnly: boolean
  readonly canFua = true
  readonly canMultiConn = true
  readonly canTrim = true
  readonly canZero = true
  readonly canFastZero = true
  readonly blockSize: BlockSizeConstraints
  readonly description: string
  readonly pageSizeBytes: number
  private readonly capacityPages: number
  private readonly pages = new Map<number, Buffer>()
  /** Counts FLUSH calls so tests can prove FUA emulation and flush routing. */
  flushCount = 0

  constructor(init: MemoryBackendInit) {
    const pageSizeBytes = init.pageSizeBytes ?? 4096
    if (!Number.isSafeInteger(init.sizeBytes) || init.sizeBytes < 0) {
      throw new InvalidArgumentError(`sizeBytes must be a non-negative safe integer, got ${init.sizeBytes}`)
    }
    if (!Number.isInteger(pageSizeBytes) || pageSizeBytes <= 0 || (pageSizeBytes & (pageSizeBytes - 1)) !== 0) {
      throw new InvalidArgumentError(`pageSizeBytes must be a power of 2, got ${pageSizeBytes}`)
    }
    this.sizeBytes = init.sizeBytes
    this.pageSizeBytes = pageSizeBytes
    const totalPages = Math.ceil(init.sizeBytes / pageSizeBytes)
    this.capacityPages = Math.min(totalPages, Math.ceil((init.capacityBytes ?? init.sizeBytes) / pageSizeBytes))
    this.isReadOnly = init.readOnly ?? false
    this.blockSize = init.blockSize ?? { ...DEFAULT_BLOCK_SIZE, preferredBytes: Math.max(512, pageSizeBytes) }
    validateBlockSize(this.blockSize, this.sizeBytes)
    this.description = init.description ?? 'in-memory volume'
  }

  /** Bytes held in allocated pages. */
  get allocatedBytes(): number {
    return this.pages.size * this.pageSizeBytes
  }

  async pread(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.checkRange(offsetBytes, lengthBytes)
    const out = Buffer.alloc(lengthBytes)
    this.forEachPage(offsetBytes, lengthBytes, (page, pageOffset, outOffset, n) => {
      this.pages.get(page)?.copy(out, outOffset, pageOffset, pageOffset + n)
    })
    return out
  }

  async pwrite(offsetBytes: number, data: Uint8Array, _options: WriteOptions): Promise<void> {
    this.checkWritable(offsetBytes, data.length)
    this.reservePages(offsetBytes, data.length)
    const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    this.forEachPage(offsetBytes, data.length, (page, pageOffset, srcOffset, n) => {
      src.copy(this.pageFor(page), pageOffset, srcOffset, srcOffset + n)
    })
  }

  async flush(): Promise<void> {
    this.flushCount++
  }

  async trim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void> {
    // Trim and zero share one effect here: whole pages are freed, partial pages zeroed.
    await this.zero(offsetBytes, lengthBytes, { ...options, fast: false, noHole: false })
  }

  async zero(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void> {
    this.checkWritable(offsetBytes, lengthBytes)
    // Provisioning zero pages costs as much as writing them: not a fast zero.
    if (options.fast && options.noHole) throw new FastZeroUnsupportedError('zeroing with NO_HOLE allocates pages')
    if (options.noHole) this.reservePages(offsetBytes, lengthBytes)
    this.forEachPage(offsetBytes, lengthBytes, (page, pageOffset, _o, n) => {
      if (n === this.pageSizeBytes && !options.noHole) {
        this.pages.delete(page)
        return
      }
      const buf = options.noHole ? this.pageFor(page) : this.pages.get(page)
      if (buf === undefined) return
      buf.fill(0, pageOffset, pageOffset + n)
      if (!options.noHole && isAllZero(buf)) this.pages.delete(page)
    })
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkRange(offsetBytes, lengthBytes)
    const out: Extent[] = []
    this.forEachPage(offsetBytes, lengthBytes, (page, _p, _o, n) => {
      const hole = !this.pages.has(page)
      const last = out[out.length - 1]
      if (last !== undefined && last.hole === hole) last.lengthBytes += n
      else out.push({ lengthBytes: n, hole, zero: hole })
    })
    return out
  }

  /** Calls `fn` for each page piece of the range: page index, offset in page, offset in range, length. */
  private forEachPage(offsetBytes: number, lengthBytes: number, fn: (page: number, pageOffset: number, rangeOffset: number, n: number) => void): void {
    let done = 0
    while (done < lengthBytes) {
      const at = offsetBytes + done
      const page = Math.floor(at / this.pageSizeBytes)
      const pageOffset = at - page * this.pageSizeBytes
      const n = Math.min(this.pageSizeBytes - pageOffset, lengthBytes - done)
      fn(page, pageOffset, done, n)
      done += n
    }
  }

  private pageFor(page: number): Buffer {
    let buf = this.pages.get(page)
    if (buf === undefined) {
      buf = Buffer.alloc(this.pageSizeBytes)
      this.pages.set(page, buf)
    }
    return buf
  }

  /** Fails before any byte changes when the range needs more pages than capacity allows. */
  private reservePages(offsetBytes: number, lengthBytes: number): void {
    let needed = 0
    this.forEachPage(offsetBytes, lengthBytes, (page) => {
      if (!this.pages.has(page)) needed++
    })
    if (this.pages.size + needed > this.capacityPages) {
      throw new ResourceExhaustedError(`memory backend full: ${this.pages.size} of ${this.capacityPages} pages allocated, ${needed} more needed`)
    }
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    // The server validates first; reaching here with a bad range is a server bug.
    assert(Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes), 'range must be integers')
    assert(offsetBytes >= 0 && lengthBytes >= 0 && offsetBytes + lengthBytes <= this.sizeBytes, `range ${offsetBytes}+${lengthBytes} outside export of ${this.sizeBytes} bytes`)
  }

  private checkWritable(offsetBytes: number, lengthBytes: number): void {
    this.checkRange(offsetBytes, lengthBytes)
    assert(!this.isReadOnly, 'write reached a read-only memory backend')
  }
}

function isAllZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false
  return true
}
