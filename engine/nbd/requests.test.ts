import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_BLOCK_SIZE } from './backend.js'
import { MemoryBackend } from './memory-backend.js'
import { transmissionFlags } from './options.js'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_REQUEST_MAGIC,
} from './protocol.js'
import { parseRequestHeader, validateRequest, type RequestContext } from './requests.js'

const MiB = 1024 * 1024
const rw = new MemoryBackend({ sizeBytes: 64 * MiB })
const ro = new MemoryBackend({ sizeBytes: 64 * MiB, readOnly: true })
const ctx = (opts: { readOnly?: boolean; structured?: boolean; baseAllocation?: boolean; min?: number } = {}): RequestContext => ({
  sizeBytes: 64 * MiB,
  transmissionFlags: transmissionFlags(opts.readOnly ? ro : rw, opts.structured ?? false),
  blockSize: { ...DEFAULT_BLOCK_SIZE, minimumBytes: opts.min ?? 1 },
  baseAllocation: opts.baseAllocation ?? false,
})

const cases: Array<[string, { type: number; flags?: number; offsetBytes?: number; lengthBytes?: number }, RequestContext, number | undefined]> = [
  ['plain read', { type: NBD_CMD_READ }, ctx(), undefined],
  ['read with FUA is accepted (spec: valid on all commands)', { type: NBD_CMD_READ, flags: NBD_CMD_FLAG_FUA }, ctx(), undefined],
  ['read with DF before structured replies', { type: NBD_CMD_READ, flags: NBD_CMD_FLAG_DF }, ctx(), NBD_EINVAL],
  ['read with DF after structured replies', { type: NBD_CMD_READ, flags: NBD_CMD_FLAG_DF }, ctx({ structured: true }), undefined],
  ['read with an unknown flag', { type: NBD_CMD_READ, flags: 1 << 9 }, ctx(), NBD_EINVAL],
  ['read with NO_HOLE (write zeroes only)', { type: NBD_CMD_READ, flags: NBD_CMD_FLAG_NO_HOLE }, ctx(), NBD_EINVAL],
  ['unknown command', { type: 42 }, ctx(), NBD_EINVAL],
  ['read of length 0', { type: NBD_CMD_READ, lengthBytes: 0 }, ctx(), NBD_EINVAL],
  ['read ending exactly at the end', { type: NBD_CMD_READ, offsetBytes: 64 * MiB - 512 }, ctx(), undefined],
  ['read past the end', { type: NBD_CMD_READ, offsetBytes: 64 * MiB - 511 }, ctx(), NBD_EINVAL],
  ['write past the end is ENOSPC', { type: NBD_CMD_WRITE, offsetBytes: 64 * MiB }, ctx(), NBD_ENOSPC],
  ['write zeroes past the end is ENOSPC', { type: NBD_CMD_WRITE_ZEROES, offsetBytes: 64 * MiB }, ctx(), NBD_ENOSPC],
  ['trim past the end is EINVAL', { type: NBD_CMD_TRIM, offsetBytes: 64 * MiB }, ctx(), NBD_EINVAL],
  ['offset near 2^64', { type: NBD_CMD_READ, offsetBytes: 2 ** 64 - 512 }, ctx(), NBD_EINVAL],
  ['read above the maximum block size', { type: NBD_CMD_READ, lengthBytes: 32 * MiB + 1 }, ctx(), NBD_EINVAL],
  ['trim above the maximum block size is fine', { type: NBD_CMD_TRIM, lengthBytes: 48 * MiB }, ctx(), undefined],
  ['write zeroes above the maximum', { type: NBD_CMD_WRITE_ZEROES, lengthBytes: 48 * MiB }, ctx(), NBD_EINVAL],
  ['fast write zeroes above the maximum', { type: NBD_CMD_WRITE_ZEROES, flags: NBD_CMD_FLAG_FAST_ZERO, lengthBytes: 48 * MiB }, ctx(), undefined],
  ['cache above the maximum', { type: NBD_CMD_CACHE, lengthBytes: 48 * MiB }, ctx(), NBD_EINVAL],
  ['unaligned read with a 4096 minimum', { type: NBD_CMD_READ, offsetBytes: 512 }, ctx({ min: 4096 }), NBD_EINVAL],
  ['aligned read with a 4096 minimum', { type: NBD_CMD_READ, offsetBytes: 4096, lengthBytes: 8192 }, ctx({ min: 4096 }), undefined],
  ['write on read-only', { type: NBD_CMD_WRITE }, ctx({ readOnly: true }), NBD_EPERM],
  ['trim on read-only', { type: NBD_CMD_TRIM }, ctx({ readOnly: true }), NBD_EPERM],
  ['write zeroes on read-only', { type: NBD_CMD_WRITE_ZEROES }, ctx({ readOnly: true }), NBD_EPERM],
  ['FUA on read-only (not offered)', { type: NBD_CMD_READ, flags: NBD_CMD_FLAG_FUA }, ctx({ readOnly: true }), NBD_EINVAL],
  ['block status without a meta context', { type: NBD_CMD_BLOCK_STATUS }, ctx({ structured: true }), NBD_EINVAL],
  ['block status with REQ_ONE', { type: NBD_CMD_BLOCK_STATUS, flags: NBD_CMD_FLAG_REQ_ONE }, ctx({ structured: true, baseAllocation: true }), undefined],
  ['REQ_ONE on a read', { type: NBD_CMD_READ, flags: NBD_CMD_FLAG_REQ_ONE }, ctx(), NBD_EINVAL],
  ['flush with a length', { type: NBD_CMD_FLUSH, lengthBytes: 512 }, ctx(), NBD_EINVAL],
  ['flush', { type: NBD_CMD_FLUSH, lengthBytes: 0 }, ctx(), undefined],
  ['write zeroes with NO_HOLE|FAST_ZERO|FUA', { type: NBD_CMD_WRITE_ZEROES, flags: NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_FUA }, ctx(), undefined],
]

for (const [name, req, context, errno] of cases) {
  test(`validateRequest: ${name} → ${errno ?? 'ok'}`, () => {
    const rejection = validateRequest(
      { flags: req.flags ?? 0, type: req.type, handle: Buffer.alloc(8), offsetBytes: req.offsetBytes ?? 0, lengthBytes: req.lengthBytes ?? 512 },
      context,
    )
    assert.equal(rejection?.errno, errno, rejection?.reason)
  })
}

test('parseRequestHeader reads fields big-endian and refuses a bad magic', () => {
  const h = Buffer.alloc(28)
  h.writeUInt32BE(NBD_REQUEST_MAGIC, 0)
  h.writeUInt16BE(NBD_CMD_FLAG_FUA, 4)
  h.writeUInt16BE(NBD_CMD_WRITE, 6)
  h.writeBigUInt64BE(0x0102030405060708n, 8)
  h.writeBigUInt64BE(4096n, 16)
  h.writeUInt32BE(512, 24)
  const req = parseRequestHeader(h)
  assert.deepEqual({ ...req, handle: req.handle.toString('hex') }, { flags: 1, type: 1, handle: '0102030405060708', offsetBytes: 4096, lengthBytes: 512 })
  h.writeUInt32BE(0x12560953, 0)
  assert.throws(() => parseRequestHeader(h), { name: 'NbdProtocolError' })
})
