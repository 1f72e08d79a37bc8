/**
 * Exports that advertise a fixed, larger size than the volume behind them, so a
 * client that reads the size once (nbdfuse fixes its file's size at connect) can
 * see the volume grow without reconnecting.
 *
 * The CSI node plugin uses it: nbdfuse exposes a file of the ceiling size, and the
 * loop device above it is limited to the volume's real size (`losetup --sizelimit`);
 * NodeExpandVolume grows the volume, then raises the loop limit, and the mounted
 * filesystem grows online. Nothing beyond the volume's live size can be read or
 * written: such requests get the errors the NBD spec names for ranges past the end
 * (ENOSPC for writes, EINVAL otherwise), block status included.
 * See docs/adr/0017-csi-node-attach.md.
 */
import { InvalidArgumentError } from '../../core/errors.js'
import type { Extent, ExportResolver, NbdBackend, WriteOptions, ZeroOptions } from './backend.js'
import { NbdRequestRejectedError } from './errors.js'
import { NBD_EINVAL, NBD_ENOSPC } from './protocol.js'

/** Largest ceiling accepted: below 2^53, and a multiple of 4 KiB so every block size divides it. */
export const SIZE_CEILING_MAX_BYTES = 2 ** 52

/** Wraps every export of `inner` so that it advertises at least `ceilingBytes`. */
export function growableExports(inner: ExportResolver, ceilingBytes: number): ExportResolver {
  if (!Number.isSafeInteger(ceilingBytes) || ceilingBytes <= 0 || ceilingBytes > SIZE_CEILING_MAX_BYTES || ceilingBytes % 4096 !== 0) {
    throw new InvalidArgumentError(`export size ceiling must be a positive multiple of 4096 up to 2^52, got ${ceilingBytes}`)
  }
  return {
    resolve: async (name) => {
      const backend = await inner.resolve(name)
      return backend === undefined ? undefined : growableBackend(backend, ceilingBytes)
    },
    list: () => inner.list(),
  }
}

/** The backend as a client of the ceiling sees it; the inner size is read on every call, so growth shows at once. */
export function growableBackend(inner: NbdBackend, ceilingBytes: number): NbdBackend {
  const within = (offsetBytes: number, lengthBytes: number, write: boolean): void => {
    const sizeBytes = inner.sizeBytes
    if (offsetBytes + lengthBytes > sizeBytes) {
      const errno = write ? NBD_ENOSPC : NBD_EINVAL
      throw new NbdRequestRejectedError(errno, `range ${offsetBytes}+${lengthBytes} ends past the volume size ${sizeBytes} (the export advertises ${ceilingBytes} to allow online growth)`)
    }
  }
  const wrapped: NbdBackend = {
    get sizeBytes() {
      return Math.max(inner.sizeBytes, ceilingBytes)
    },
    get isReadOnly() {
      return inner.isReadOnly
    },
    get canFua() {
      return inner.canFua
    },
    get canMultiConn() {
      return inner.canMultiConn
    },
    get canTrim() {
      return inner.canTrim
    },
    get canZero() {
      return inner.canZero
    },
    get canFastZero() {
      return inner.canFastZero
    },
    get blockSize() {
      return inner.blockSize
    },
    get description() {
      return inner.description
    },
    pread: async (offsetBytes, lengthBytes) => {
      within(offsetBytes, lengthBytes, false)
      return inner.pread(offsetBytes, lengthBytes)
    },
    pwrite: async (offsetBytes, data, options: WriteOptions) => {
      within(offsetBytes, data.length, true)
      return inner.pwrite(offsetBytes, data, options)
    },
    flush: () => inner.flush(),
    trim: async (offsetBytes, lengthBytes, options: WriteOptions) => {
      within(offsetBytes, lengthBytes, false)
      return inner.trim(offsetBytes, lengthBytes, options)
    },
    zero: async (offsetBytes, lengthBytes, options: ZeroOptions) => {
      within(offsetBytes, lengthBytes, true)
      return inner.zero(offsetBytes, lengthBytes, options)
    },
    extents: async (offsetBytes, lengthBytes): Promise<Extent[]> => {
      // A query that starts inside the volume is answered up to its end (fewer bytes than asked is allowed).
      within(offsetBytes, 1, false)
      return inner.extents(offsetBytes, Math.min(lengthBytes, inner.sizeBytes - offsetBytes))
    },
  }
  if (inner.cache !== undefined) {
    const cache = inner.cache.bind(inner)
    wrapped.cache = async (offsetBytes, lengthBytes) => {
      within(offsetBytes, lengthBytes, false)
      return cache(offsetBytes, lengthBytes)
    }
  }
  return wrapped
}
