import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { Registry, collectDefaultMetrics } from 'prom-client'
import type { Logger } from './logger.js'
import type { Startable } from './startable.js'
import { InvalidArgumentError } from './errors.js'

export interface HealthServerInit {
  /** Address to listen on, `host:port`; port 0 picks a free port. */
  listen: string
  /** Returns why the component is not ready, or undefined when it is. */
  readiness: () => string | undefined | Promise<string | undefined>
  /**
   * Extra read-only routes (status pages, JSON views) mounted next to the health routes.
   * @default none
   */
  routes?: (app: express.Express) => void
}

export interface HealthServerComponents {
  logger: Logger
  registry: Registry
}

/**
 * The HTTP side every daemon shares: `/healthz` (the process is alive and its event
 * loop turns), `/readyz` (it can serve), `/metrics` (Prometheus text format).
 */
export class HealthServer implements Startable {
  private server: Server | undefined
  private readonly app: express.Express

  constructor(
    private readonly init: HealthServerInit,
    private readonly components: HealthServerComponents,
  ) {
    this.app = express()
    this.app.disable('x-powered-by')
    this.app.get('/healthz', (_req, res) => {
      res.type('text/plain').send('ok\n')
    })
    this.app.get('/readyz', async (_req, res) => {
      const reason = await this.init.readiness()
      if (reason === undefined) res.type('text/plain').send('ready\n')
      else res.status(503).type('text/plain').send(`not ready: ${reason}\n`)
    })
    this.app.get('/metrics', async (_req, res) => {
      res.type(this.components.registry.contentType).send(await this.components.registry.metrics())
    })
    init.routes?.(this.app)
  }

  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.init.listen)
    const server = createServer(this.app)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    this.components.logger.info({ address: this.address() }, 'health and metrics server listening')
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** The bound address, `host:port`, once started. */
  address(): string {
    const addr = this.server?.address() as AddressInfo | null | undefined
    if (addr == null) throw new Error('health server is not listening')
    return `${addr.address}:${addr.port}`
  }
}

/** A registry with the process's default metrics (CPU, memory, event loop lag) under the `cairn_` prefix. */
export function createRegistry(defaultLabels: Record<string, string> = {}): Registry {
  const registry = new Registry()
  registry.setDefaultLabels(defaultLabels)
  collectDefaultMetrics({ register: registry, prefix: 'cairn_' })
  return registry
}

/** Splits `host:port` (IPv6 as `[::1]:port`); throws on anything else. */
export function parseHostPort(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address)
  const port = match ? Number(match[3]) : NaN
  if (!match || port > 65535) throw new InvalidArgumentError(`expected host:port, got ${JSON.stringify(address)}`)
  return { host: (match[1] ?? match[2]) as string, port }
}
