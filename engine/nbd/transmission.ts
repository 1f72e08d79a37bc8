/**
 * Phase 3: transmission. Requests are parsed continuously and served concurrently,
 * up to a bound on requests and bytes in flight; at the bound the parser stops
 * reading and the socket pauses (TCP backpressure). Replies go out as whole
 * messages, in completion order, matched to requests by handle.
 */
import type { Logger } from '../../core/logger.js'
import { ShuttingDownError, assert } from '../../core/errors.js'
import type { Extent } from './backend.js'
import {
  ConnectionClosedError,
  FastZeroUnsupportedError,
  NbdProtocolError,
  NbdRequestRejectedError,
  describeError,
  toNbdErrno,
} from './errors.js'
import type { NbdMetrics } from './metrics.js'
import { BASE_ALLOCATION_CONTEXT_ID, type NegotiatedExport } from './options.js'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
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
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  REQUEST_HEADER_BYTES,
  commandName,
  errnoName,
  type NbdErrno,
} from './protocol.js'
import { blockStatusChunk, errorChunk, offsetDataChunk, offsetHoleChunk, simpleReply, type Wire } from './replies.js'
import { parseRequestHeader, validateRequest, type NbdRequest, type RequestContext } from './requests.js'

export interface TransmissionLimits {
  /** Requests served at once on one connection. */
  maxInFlightRequests: number
  /** READ and WRITE payload bytes held at once on one connection (one larger request may run alone). */
  maxInFlightBytes: number
  /** WRITE payloads above this are not read: the request fails and the connection closes. */
  maxWritePayloadBytes: number
  /** Answer structured READs with OFFSET_HOLE chunks where the backend reports zeroes. */
  sparseReads: boolean
}

export interface TransmissionComponents {
  logger: Logger
  metrics: NbdMetrics
}

/** Extent pieces a sparse read may be split into before it is cheaper to send one data chunk. */
const MAX_READ_PIECES = 16
/** Descriptors in one BLOCK_STATUS reply; clients ask again for the rest. */
const MAX_STATUS_DESCRIPTORS = 1024
/** Buffer used when a backend cannot zero natively and zeroes are written instead. */
const ZERO_WRITE_BYTES = 1024 * 1024

/** Bounds what one connection holds in flight; the single request parser is its only acquirer. */
class InFlightBudget {
  private requests = 0
  private bytes = 0
  private waiters: Array<() => void> = []

  constructor(
    private readonly maxRequests: number,
    private readonly maxBytes: number,
  ) {}

  get inFlight(): number {
    return this.requests
  }

  async acquire(bytes: number): Promise<void> {
    while (!(this.requests < this.maxRequests && (this.requests === 0 || this.bytes + bytes <= this.maxBytes))) {
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
    this.requests++
    this.bytes += bytes
  }

  release(bytes: number): void {
    this.requests--
    this.bytes -= bytes
    assert(this.requests >= 0 && this.bytes >= 0, 'in-flight budget released more than acquired')
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  /** Resolves when nothing is in flight. */
  async idle(): Promise<void> {
    while (this.requests > 0) await new Promise<void>((resolve) => this.waiters.push(resolve))
  }
}

export class Transmission {
  private readonly budget: InFlightBudget
  private readonly ctx: RequestContext
  private stopping = false

  constructor(
    private readonly wire: Wire,
    private readonly exp: NegotiatedExport,
    private readonly limits: TransmissionLimits,
    private readonly components: TransmissionComponents,
  ) {
    this.budget = new InFlightBudget(limits.maxInFlightRequests, limits.maxInFlightBytes)
    this.ctx = {
      sizeBytes: exp.sizeBytes,
      transmissionFlags: exp.transmissionFlags,
      blockSize: exp.blockSize,
      baseAllocation: exp.baseAllocation,
    }
  }

  get inFlight(): number {
    return this.budget.inFlight
  }

  /**
   * Serves requests until NBD_CMD_DISC, the end of the stream, or `stop()`; then waits
   * for requests in flight. Resolves on a clean end.
   * @throws NbdProtocolError when the stream became unusable (after in-flight replies went out).
   */
  async run(): Promise<void> {
    try {
      await this.readLoop()
    } catch (err) {
      const quiet = err instanceof ConnectionClosedError || (this.stopping && err instanceof ShuttingDownError)
      if (!quiet) throw err
    } finally {
      await this.budget.idle()
    }
  }

  /** Stops reading new requests; `run` resolves once those in flight are answered. */
  stop(): void {
    this.stopping = true
    this.wire.reader.close(new ShuttingDownError('server is stopping'))
  }

  private async readLoop(): Promise<void> {
    for (;;) {
      const req = parseRequestHeader(await this.wire.reader.read(REQUEST_HEADER_BYTES))
      if (req.type === NBD_CMD_DISC) {
        this.components.logger.debug('nbd client sent disconnect')
        return
      }
      if (req.type === NBD_CMD_WRITE && req.lengthBytes > this.limits.maxWritePayloadBytes) {
        // Reading gigabytes to resynchronize is a denial of service; answer and hang up.
        const reason = `write payload of ${req.lengthBytes} bytes exceeds ${this.limits.maxWritePayloadBytes}`
        this.reject(req, NBD_EINVAL, reason, performance.now())
        throw new NbdProtocolError('write_payload_too_large', reason)
      }
      const cost = req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE ? req.lengthBytes : 0
      await this.budget.acquire(cost)
      const started = performance.now()
      let payload: Buffer | undefined
      try {
        if (req.type === NBD_CMD_WRITE) payload = await this.wire.reader.read(req.lengthBytes)
      } catch (err) {
        this.budget.release(cost)
        throw err
      }
      void this.serve(req, payload, cost, started)
    }
  }

  /** Serves one request to its reply; never throws. */
  private async serve(req: NbdRequest, payload: Buffer | undefined, cost: number, started: number): Promise<void> {
    try {
      const rejection = validateRequest(req, this.ctx)
      if (rejection !== undefined) {
        this.reject(req, rejection.errno, rejection.reason, started)
        return
      }
      try {
        await this.execute(req, payload)
        this.record(req, 'ok', started)
      } catch (err) {
        const errno = toNbdErrno(err, req.type)
        const reason = describeError(err)
        const level = err instanceof NbdRequestRejectedError || err instanceof FastZeroUnsupportedError ? 'info' : 'error'
        this.components.logger[level](this.logFields(req, errno, reason), 'nbd request failed in backend')
        this.sendError(req, errno, reason)
        this.record(req, errnoName(errno), started)
      }
      await this.wire.whenDrained()
    } catch (err) {
      // Only a bug gets here (encoding a reply threw); the request must still leave the budget.
      this.components.logger.error({ err: describeError(err) }, 'nbd request handling failed')
    } finally {
      this.budget.release(cost)
    }
  }

  private reject(req: NbdRequest, errno: NbdErrno, reason: string, started: number): void {
    this.components.logger.warn(this.logFields(req, errno, reason), 'nbd request rejected')
    this.sendError(req, errno, reason)
    this.record(req, errnoName(errno), started)
  }

  private logFields(req: NbdRequest, errno: NbdErrno, reason: string): Record<string, unknown> {
    return {
      command: commandName(req.type),
      type: req.type,
      flags: req.flags,
      handle: req.handle.toString('hex'),
      offsetBytes: req.offsetBytes,
      lengthBytes: req.lengthBytes,
      errno: errnoName(errno),
      reason,
    }
  }

  private record(req: NbdRequest, result: string, started: number): void {
    const command = commandName(req.type)
    this.components.metrics.requests.inc({ command, result })
    this.components.metrics.requestSeconds.observe({ command }, (performance.now() - started) / 1000)
  }

  private async execute(req: NbdRequest, payload: Buffer | undefined): Promise<void> {
    const backend = this.exp.backend
    const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0
    switch (req.type) {
      case NBD_CMD_READ:
        await this.read(req)
        return
      case NBD_CMD_WRITE:
        assert(payload !== undefined && payload.length === req.lengthBytes, 'write payload matches its length')
        await backend.pwrite(req.offsetBytes, payload, { fua: fua && backend.canFua })
        await this.emulateFua(fua)
        this.components.metrics.writtenBytes.inc(req.lengthBytes)
        break
      case NBD_CMD_FLUSH:
        await backend.flush()
        break
      case NBD_CMD_TRIM:
        await backend.trim(req.offsetBytes, req.lengthBytes, { fua: fua && backend.canFua })
        await this.emulateFua(fua)
        break
      case NBD_CMD_WRITE_ZEROES:
        await this.writeZeroes(req, fua)
        break
      case NBD_CMD_CACHE:
        await backend.cache?.(req.offsetBytes, req.lengthBytes)
        break
      case NBD_CMD_BLOCK_STATUS:
        await this.blockStatus(req)
        return
      default:
        assert(false, `validated request has unknown type ${req.type}`)
    }
    this.sendOk(req)
  }

  /** A backend without native FUA gets a flush after the write, which persists it too. */
  private async emulateFua(fua: boolean): Promise<void> {
    if (fua && !this.exp.backend.canFua) await this.exp.backend.flush()
  }

  private async writeZeroes(req: NbdRequest, fua: boolean): Promise<void> {
    const backend = this.exp.backend
    const fast = (req.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0
    const noHole = (req.flags & NBD_CMD_FLAG_NO_HOLE) !== 0
    if (fast && !(backend.canZero && backend.canFastZero)) {
      throw new FastZeroUnsupportedError('backend cannot zero faster than it writes')
    }
    if (backend.canZero) {
      await backend.zero(req.offsetBytes, req.lengthBytes, { fua: fua && backend.canFua, fast, noHole })
    } else {
      const zeroes = Buffer.alloc(Math.min(ZERO_WRITE_BYTES, req.lengthBytes))
      for (let done = 0; done < req.lengthBytes; done += zeroes.length) {
        const n = Math.min(zeroes.length, req.lengthBytes - done)
        await backend.pwrite(req.offsetBytes + done, zeroes.subarray(0, n), { fua: fua && backend.canFua })
      }
    }
    await this.emulateFua(fua)
  }

  private async read(req: NbdRequest): Promise<void> {
    const backend = this.exp.backend
    const { offsetBytes, lengthBytes } = req
    if (!this.exp.structuredReplies) {
      const data = await backend.pread(offsetBytes, lengthBytes)
      assert(data.length === lengthBytes, `backend returned ${data.length} bytes for a ${lengthBytes}-byte read`)
      this.wire.send(simpleReply(req.handle, 0, data))
      this.components.metrics.readBytes.inc(lengthBytes)
      return
    }
    let pieces = [{ offsetBytes, lengthBytes, zero: false }]
    if (this.limits.sparseReads && (req.flags & NBD_CMD_FLAG_DF) === 0) {
      const sparse = readPieces(await backend.extents(offsetBytes, lengthBytes), offsetBytes, lengthBytes)
      if (sparse.length <= MAX_READ_PIECES) pieces = sparse
    }
    const datas = await Promise.all(pieces.map((p) => (p.zero ? undefined : backend.pread(p.offsetBytes, p.lengthBytes))))
    // Everything is read before the first byte goes out, so no error can follow a chunk marked done.
    const parts: Uint8Array[] = []
    pieces.forEach((p, i) => {
      const done = i === pieces.length - 1
      const data = datas[i]
      if (data === undefined) parts.push(...offsetHoleChunk(req.handle, p.offsetBytes, p.lengthBytes, done))
      else {
        assert(data.length === p.lengthBytes, `backend returned ${data.length} bytes for a ${p.lengthBytes}-byte read`)
        parts.push(...offsetDataChunk(req.handle, p.offsetBytes, data, done))
      }
    })
    this.wire.send(parts)
    this.components.metrics.readBytes.inc(lengthBytes)
  }

  private async blockStatus(req: NbdRequest): Promise<void> {
    const extents = await this.exp.backend.extents(req.offsetBytes, req.lengthBytes)
    let descriptors = statusDescriptors(extents, req.lengthBytes)
    if (req.flags & NBD_CMD_FLAG_REQ_ONE) descriptors = descriptors.slice(0, 1)
    this.wire.send(blockStatusChunk(req.handle, BASE_ALLOCATION_CONTEXT_ID, descriptors, true))
  }

  private sendOk(req: NbdRequest): void {
    // A simple reply is allowed for any payload-free success, structured or not.
    this.wire.send(simpleReply(req.handle, 0))
  }

  private sendError(req: NbdRequest, errno: NbdErrno, message: string): void {
    if (this.exp.structuredReplies) this.wire.send(errorChunk(req.handle, errno, message))
    else this.wire.send(simpleReply(req.handle, errno))
  }
}

/** Clips extents to `[0, lengthBytes)` of the request and checks the backend kept its contract. */
function clipExtents(extents: readonly Extent[], lengthBytes: number): Extent[] {
  assert(extents.length > 0, 'backend returned no extents')
  const out: Extent[] = []
  let covered = 0
  for (const e of extents) {
    if (covered >= lengthBytes) break
    assert(Number.isSafeInteger(e.lengthBytes) && e.lengthBytes > 0, `backend returned an extent of ${e.lengthBytes} bytes`)
    const n = Math.min(e.lengthBytes, lengthBytes - covered)
    const last = out[out.length - 1]
    if (last !== undefined && last.hole === e.hole && last.zero === e.zero) last.lengthBytes += n
    else out.push({ lengthBytes: n, hole: e.hole, zero: e.zero })
    covered += n
  }
  return out
}

/** Read pieces covering the whole request; ranges the backend did not describe are read as data. */
function readPieces(extents: readonly Extent[], offsetBytes: number, lengthBytes: number) {
  const pieces: Array<{ offsetBytes: number; lengthBytes: number; zero: boolean }> = []
  let at = offsetBytes
  for (const e of clipExtents(extents, lengthBytes)) {
    pieces.push({ offsetBytes: at, lengthBytes: e.lengthBytes, zero: e.zero })
    at += e.lengthBytes
  }
  if (at < offsetBytes + lengthBytes) pieces.push({ offsetBytes: at, lengthBytes: offsetBytes + lengthBytes - at, zero: false })
  return pieces
}

function statusDescriptors(extents: readonly Extent[], lengthBytes: number): Array<{ lengthBytes: number; flags: number }> {
  return clipExtents(extents, lengthBytes)
    .slice(0, MAX_STATUS_DESCRIPTORS)
    .map((e) => ({ lengthBytes: e.lengthBytes, flags: (e.hole ? NBD_STATE_HOLE : 0) | (e.zero ? NBD_STATE_ZERO : 0) }))
}
