/**
 * One client connection through its three phases: handshake, option haggling,
 * transmission. Whatever the client does, the connection ends by itself; nothing
 * it throws reaches the server or other connections.
 */
import type { Socket } from 'node:net'
import type { Logger } from '../../core/logger.js'
import type { ExportResolver } from './backend.js'
import { ByteReader } from './byte-reader.js'
import { ConnectionClosedError, NbdProtocolError, describeError } from './errors.js'
import { handshake } from './handshake.js'
import type { NbdMetrics } from './metrics.js'
import { haggle, type OptionLimits } from './options.js'
import { PORTABLE_PAYLOAD_BYTES } from './protocol.js'
import type { Wire } from './replies.js'
import { Transmission, type TransmissionLimits } from './transmission.js'

export interface ConnectionLimits extends OptionLimits, Omit<TransmissionLimits, 'maxWritePayloadBytes'> {
  handshakeTimeoutMs: number
  /** Bytes the reader buffers ahead of the parser before pausing the socket. */
  readAheadBytes: number
}

export interface ConnectionComponents {
  logger: Logger
  metrics: NbdMetrics
  exports: ExportResolver
}

/** How long an ending connection may take to flush its last replies before it is destroyed. */
const CLOSE_GRACE_MS = 2000

export class NbdConnection {
  private readonly wire: Wire
  private transmission: Transmission | undefined
  private stopping = false
  /** One shared wait, so that many replies waiting for drain add one listener, not one each. */
  private drained: Promise<void> | undefined

  constructor(
    private readonly socket: Socket,
    private readonly limits: ConnectionLimits,
    private readonly components: ConnectionComponents,
  ) {
    const reader = new ByteReader(socket, limits.readAheadBytes)
    this.wire = {
      reader,
      send: (parts) => {
        if (socket.destroyed || !socket.writable) return
        // Corking turns one reply's buffers into one writev; all of it is queued before any other reply.
        socket.cork()
        for (const part of parts) socket.write(part)
        socket.uncork()
      },
      whenDrained: () => this.whenDrained(),
    }
  }

  /** Runs the connection to its end; never rejects. */
  async run(): Promise<void> {
    const { logger, metrics } = this.components
    metrics.connections.inc()
    if (typeof this.socket.setNoDelay === 'function') this.socket.setNoDelay(true)
    const timer = setTimeout(() => {
      logger.warn({ timeoutMs: this.limits.handshakeTimeoutMs }, 'nbd handshake timed out')
      metrics.protocolErrors.inc({ reason: 'handshake_timeout' })
      this.socket.destroy()
    }, this.limits.handshakeTimeoutMs)
    try {
      await this.serve(timer)
    } catch (err) {
      this.onError(err)
    } finally {
      clearTimeout(timer)
      metrics.connections.dec()
      this.close()
    }
  }

  /** True while no export is chosen yet: nothing is at stake if the connection drops. */
  get inHandshake(): boolean {
    return this.transmission === undefined
  }

  /** Graceful stop: no new requests; requests in flight are answered, then `run` ends. */
  stop(): void {
    this.stopping = true
    this.transmission?.stop()
  }

  destroy(): void {
    this.socket.destroy()
  }

  private whenDrained(): Promise<void> {
    const socket = this.socket
    if (!socket.writableNeedDrain || socket.destroyed) return Promise.resolve()
    this.drained ??= new Promise<void>((resolve) => {
      const done = (): void => {
        socket.off('drain', done)
        socket.off('close', done)
        this.drained = undefined
        resolve()
      }
      socket.on('drain', done)
      socket.on('close', done)
    })
    return this.drained
  }

  private async serve(timer: NodeJS.Timeout): Promise<void> {
    const client = await handshake(this.wire)
    const exp = await haggle(this.wire, {
      exports: this.components.exports,
      limits: this.limits,
      logger: this.components.logger,
      client,
      isStopping: () => this.stopping,
    })
    clearTimeout(timer)
    if (exp === undefined) return
    this.components.logger.info({ export: exp.name, sizeBytes: exp.sizeBytes, structuredReplies: exp.structuredReplies }, 'nbd client entered transmission')
    this.transmission = new Transmission(
      this.wire,
      exp,
      { ...this.limits, maxWritePayloadBytes: Math.max(exp.blockSize.maximumBytes, PORTABLE_PAYLOAD_BYTES) },
      this.components,
    )
    if (this.stopping) this.transmission.stop()
    await this.transmission.run()
  }

  private onError(err: unknown): void {
    const { logger, metrics } = this.components
    if (err instanceof NbdProtocolError) {
      metrics.protocolErrors.inc({ reason: err.reason })
      logger.warn({ reason: err.reason, err: err.message }, 'nbd protocol error; closing connection')
    } else if (err instanceof ConnectionClosedError) {
      logger.debug({ err: err.message }, 'nbd client went away')
    } else {
      logger.error({ err: describeError(err) }, 'nbd connection failed')
    }
  }

  /** Ends the socket after queued replies flush; destroys it if the peer does not cooperate. */
  private close(): void {
    if (this.socket.destroyed) return
    this.socket.end()
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref()
  }
}
