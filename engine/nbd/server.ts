/**
 * The NBD server: listeners (TCP and Unix sockets), the set of live connections,
 * and a graceful stop. Protocol work lives in the phase modules; this file only
 * wires sockets to connections.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Registry } from 'prom-client'
import { InvalidArgumentError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import type { ExportResolver } from './backend.js'
import { NbdConnection, type ConnectionLimits } from './connection.js'
import { describeError } from './errors.js'
import { createNbdMetrics, type NbdMetrics } from './metrics.js'

/** A TCP address (port 0 picks a free port) or a Unix socket path. */
export type NbdListenAddress = { host: string; port: number } | { path: string }

export interface NbdServerInit {
  listen: readonly NbdListenAddress[]
  /** @default 64 */
  maxInFlightRequests?: number
  /** Request bytes one connection holds in flight; more requests wait to be read. @default 32 MiB */
  maxInFlightBytes?: number
  /** Largest READ/WRITE payload; caps every export's advertised maximum block size. @default 32 MiB */
  maxPayloadBytes?: number
  /** @default 16 KiB */
  maxOptionBytes?: number
  /** @default 1024 */
  maxOptions?: number
  /** @default 1024 */
  maxConnections?: number
  /** Handshake and option haggling must finish within this. @default 30000 */
  handshakeTimeoutMs?: number
  /** How long `stop` waits for requests in flight before destroying connections. @default 10000 */
  stopTimeoutMs?: number
  /** Structured reads send holes as OFFSET_HOLE chunks. @default true */
  sparseReads?: boolean
}

export interface NbdServerComponents {
  logger: Logger
  registry: Registry
  exports: ExportResolver
}

const MiB = 1024 * 1024

/** The per-connection bound engine/host/memory-budget.ts counts (a single request up to maxPayloadBytes is still read alone). */
export const NBD_MEMORY_DEFAULTS = { maxInFlightBytes: 32 * MiB } as const

export class NbdServer implements Startable {
  private readonly servers: Server[] = []
  private readonly connections = new Set<NbdConnection>()
  private readonly running = new Set<Promise<void>>()
  private readonly limits: ConnectionLimits
  private readonly metrics: NbdMetrics
  private readonly maxConnections: number
  private readonly stopTimeoutMs: number
  private nextConnectionId = 1

  constructor(
    private readonly init: NbdServerInit,
    private readonly components: NbdServerComponents,
  ) {
    const positive = (name: string, value: number, min = 1): number => {
      if (!Number.isSafeInteger(value) || value < min) throw new InvalidArgumentError(`${name} must be an integer of at least ${min}, got ${value}`)
      return value
    }
    if (init.listen.length === 0) throw new InvalidArgumentError('the NBD server needs at least one listen address')
    this.limits = {
      maxInFlightRequests: positive('maxInFlightRequests', init.maxInFlightRequests ?? 64),
      maxInFlightBytes: positive('maxInFlightBytes', init.maxInFlightBytes ?? NBD_MEMORY_DEFAULTS.maxInFlightBytes),
      // The spec wants a maximum block size of at least 1 MiB where exports are that large.
      maxPayloadBytes: positive('maxPayloadBytes', init.maxPayloadBytes ?? 32 * MiB, MiB),
      maxOptionBytes: positive('maxOptionBytes', init.maxOptionBytes ?? 16 * 1024, 4096 + 16),
      maxOptions: positive('maxOptions', init.maxOptions ?? 1024),
      handshakeTimeoutMs: positive('handshakeTimeoutMs', init.handshakeTimeoutMs ?? 30_000),
      sparseReads: init.sparseReads ?? true,
      readAheadBytes: 256 * 1024,
    }
    this.maxConnections = positive('maxConnections', init.maxConnections ?? 1024)
    this.stopTimeoutMs = positive('stopTimeoutMs', init.stopTimeoutMs ?? 10_000, 0)
    this.metrics = createNbdMetrics(components.registry)
  }

  async start(): Promise<void> {
    for (const address of this.init.listen) {
      const server = createServer((socket) => this.accept(socket))
      server.maxConnections = this.maxConnections
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        const ready = (): void => {
          server.off('error', reject)
          resolve()
        }
        if ('path' in address) server.listen(address.path, ready)
        else server.listen(address.port, address.host, ready)
      })
      server.on('error', (err) => this.components.logger.error({ err: describeError(err) }, 'nbd listener error'))
      this.servers.push(server)
    }
    this.components.logger.info({ addresses: this.addresses() }, 'nbd server listening')
  }

  /** Bound addresses, in `listen` order; TCP ports are the real ones when 0 was asked. */
  addresses(): NbdListenAddress[] {
    return this.servers.map((server) => {
      const addr = server.address()
      if (typeof addr === 'string') return { path: addr }
      const info = addr as AddressInfo
      return { host: info.address, port: info.port }
    })
  }

  /** Connections currently open. */
  get connectionCount(): number {
    return this.connections.size
  }

  /**
   * Stops accepting, lets every connection answer the requests it holds, then closes them.
   * Connections still negotiating close at once; anything left after `stopTimeoutMs` is destroyed.
   */
  async stop(): Promise<void> {
    const servers = this.servers.splice(0)
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
    for (const conn of this.connections) {
      if (conn.inHandshake) conn.destroy()
      else conn.stop()
    }
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.stopTimeoutMs)
    })
    const finished = Promise.allSettled([...this.running]).then(() => false)
    if (await Promise.race([finished, timedOut])) {
      this.components.logger.warn({ connections: this.connections.size }, 'nbd stop timed out; destroying connections')
      for (const conn of this.connections) conn.destroy()
    }
    clearTimeout(timer)
    await Promise.allSettled([...this.running])
    await Promise.all(closed)
  }

  private accept(socket: Socket): void {
    const id = this.nextConnectionId++
    const logger = this.components.logger.child({ conn: id, remote: socket.remoteAddress ?? 'unix' })
    const conn = new NbdConnection(socket, this.limits, { logger, metrics: this.metrics, exports: this.components.exports })
    this.connections.add(conn)
    const run = conn.run().finally(() => {
      this.connections.delete(conn)
      this.running.delete(run)
    })
    this.running.add(run)
    logger.debug('nbd client connected')
  }
}
