/**
 * The wall between the NBD server and what stores the bytes (STYLE, "From nbdkit").
 *
 * The server validates every request (bounds, alignment, flags, read-only) before it
 * calls a backend, so a backend sees only in-range, well-formed calls. Backends throw
 * Cairn errors; `toNbdErrno` in errors.ts turns them into wire errors.
 */
import { InvalidArgumentError, assert } from '../../core/errors.js'

/** One run of the export with uniform allocation state, for base:allocation. */
export interface Extent {
  /** Nonzero. */
  lengthBytes: number
  /** Not allocated in the backing store (NBD_STATE_HOLE). */
  hole: boolean
  /** Known to read as zeroes (NBD_STATE_ZERO). */
  zero: boolean
}

/** Block size constraints, advertised with NBD_INFO_BLOCK_SIZE and enforced by the server. */
export interface BlockSizeConstraints {
  /** Power of 2, 1..65536; offsets and lengths must be multiples of it. */
  minimumBytes: number
  /** Power of 2, at least max(minimumBytes, 512). */
  preferredBytes: number
  /** Largest READ/WRITE/WRITE_ZEROES/CACHE length; multiple of minimumBytes, or 0xffffffff. */
  maximumBytes: number
}

export interface WriteOptions {
  /** Persist before resolving (NBD_CMD_FLAG_FUA); only set when `canFua` is true. */
  fua: boolean
}

export interface ZeroOptions extends WriteOptions {
  /** Fail at once with FastZeroUnsupportedError unless zeroing is faster than writing. */
  fast: boolean
  /** The range must stay allocated (NBD_CMD_FLAG_NO_HOLE). */
  noHole: boolean
}

/**
 * What the NBD server needs from a volume. Ranges passed in are always inside
 * `[0, sizeBytes)`, aligned to `blockSize.minimumBytes`, and nonempty.
 */
export interface NbdBackend {
  /** Export size; a safe integer. Read per connection, so a resized volume shows on reconnect. */
  readonly sizeBytes: number
  readonly isReadOnly: boolean
  /** Native FUA; when false the server emulates FUA with a flush after the write. */
  readonly canFua: boolean
  /** FLUSH and FUA on one connection cover writes completed on every connection. */
  readonly canMultiConn: boolean
  readonly canTrim: boolean
  /** Native zeroing; when false the server writes zero buffers instead. */
  readonly canZero: boolean
  /** `zero` with `fast` can succeed; when false the server answers fast zeroes with ENOTSUP. */
  readonly canFastZero: boolean
  readonly blockSize: BlockSizeConstraints
  /** Shown by NBD_INFO_DESCRIPTION. */
  readonly description?: string

  /** Resolves to exactly `lengthBytes` bytes. */
  pread(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>
  pwrite(offsetBytes: number, data: Uint8Array, options: WriteOptions): Promise<void>
  /** Persists every write that completed before the call, on any connection. */
  flush(): Promise<void>
  /** Discards the range; afterwards it may read as anything until rewritten. */
  trim(offsetBytes: number, lengthBytes: number, options: WriteOptions): Promise<void>
  /** Makes the range read as zeroes. Only called when `canZero` is true. */
  zero(offsetBytes: number, lengthBytes: number, options: ZeroOptions): Promise<void>
  /**
   * Consecutive extents starting at `offsetBytes`: at least one, covering at most
   * `lengthBytes` (more is allowed and clipped by the server).
   */
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]>
  /** Optional prefetch hint for NBD_CMD_CACHE. */
  cache?(offsetBytes: number, lengthBytes: number): Promise<void>
}

/** Finds exports by name, so that one server serves many volumes. */
export interface ExportResolver {
  /** The backend for `name` (the empty name is the default export), or undefined. */
  resolve(name: string): NbdBackend | undefined | Promise<NbdBackend | undefined>
  /** Export names for NBD_OPT_LIST. */
  list(): readonly string[] | Promise<readonly string[]>
}

/** A resolver over a fixed map; `defaultExport` names what the empty name means. */
export function staticExports(exports: ReadonlyMap<string, NbdBackend>, defaultExport?: string): ExportResolver {
  return {
    resolve: (name) => exports.get(name === '' && defaultExport !== undefined ? defaultExport : name),
    list: () => [...exports.keys()],
  }
}

/** The spec's defaults when a backend states no constraints of its own. */
export const DEFAULT_BLOCK_SIZE: BlockSizeConstraints = Object.freeze({
  minimumBytes: 1,
  preferredBytes: 4096,
  maximumBytes: 32 * 1024 * 1024,
})

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0

/**
 * Checks constraints against the rules of the spec's "Block size constraints"
 * section; a backend that breaks them is a bug, caught before any client sees it.
 * @throws InvalidArgumentError naming the broken rule.
 */
export function validateBlockSize(c: BlockSizeConstraints, sizeBytes: number): void {
  const fail = (why: string): never => {
    throw new InvalidArgumentError(`invalid block size constraints ${JSON.stringify(c)}: ${why}`)
  }
  if (!isPowerOfTwo(c.minimumBytes) || c.minimumBytes > 65536) fail('minimum must be a power of 2 up to 65536')
  if (!isPowerOfTwo(c.preferredBytes) || c.preferredBytes < Math.max(c.minimumBytes, 512)) {
    fail('preferred must be a power of 2 of at least max(minimum, 512)')
  }
  if (!Number.isInteger(c.maximumBytes) || c.maximumBytes > 0xffffffff) fail('maximum must be a 32-bit integer')
  if (c.maximumBytes !== 0xffffffff && c.maximumBytes % c.minimumBytes !== 0) fail('maximum must be a multiple of minimum')
  if (c.maximumBytes < Math.min(c.preferredBytes, sizeBytes)) fail('maximum must be at least min(preferred, size)')
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, `export size ${sizeBytes} is not a safe integer`)
}
