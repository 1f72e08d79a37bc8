/**
 * TEST INFRASTRUCTURE — not part of Cairn's runtime. A plain-HTTP server on
 * loopback that behaves like kube-apiserver for what Cairn's operator, the
 * Kubernetes ControlPlane, kubectl and @kubernetes/client-node use: discovery,
 * generic CRUD with resourceVersion conflicts, the status subresource, merge /
 * JSON / strategic patches, finalizers and ownerReference GC, label and field
 * selectors, paging, watches with bookmarks and 410 Expired, server-side tables,
 * and CRD schema validation (structural OpenAPI v3 + CEL) for custom resources.
 * The code under test is the same code that talks to a real cluster.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import yaml from 'js-yaml'
import type { Logger } from '../../core/logger.js'
import { silentLogger } from '../../core/logger.js'
import type { Startable } from '../../core/startable.js'
import { assert } from '../../core/errors.js'
import { ApiError, badRequest, methodNotAllowed } from './errors.js'
import { isObject, type Json, type JsonObject } from './patch.js'
import { ResourceRegistry } from './resources.js'
import { RestStorage } from './rest.js'
import { ObjectStore } from './store.js'
import { forbiddenMessage, requestAttributes, type RequestAttributes } from './request-info.js'
import { handleResource, parseRoute } from './routes.js'
import { openApiV3Document, openApiV3Root } from './openapi.js'
import type { OpenWatch } from './watch.js'

/** Options of {@link TestApiServer}. */
export interface TestApiServerOptions {
  /** @default '127.0.0.1' */
  host?: string
  /** @default 0 (any free port) */
  port?: number
  /** Changes kept for watches to replay; older resourceVersions answer 410. @default 10000 */
  historyWindowEvents?: number
  /** How often a watch with allowWatchBookmarks gets a BOOKMARK. @default 1000 */
  bookmarkIntervalMs?: number
  /** Watch length when the client gives no timeoutSeconds. @default 1800 */
  defaultWatchTimeoutSeconds?: number
  /** A watch whose socket buffers more than this is closed. @default 16 MiB */
  maxWatchBufferedBytes?: number
  /** Largest accepted request body (kube-apiserver's limit is 3 MiB). @default 3 MiB */
  maxRequestBodyBytes?: number
  /** @default silentLogger() */
  logger?: Logger
  /**
   * Decides every request, as kube-apiserver's authorizer (e.g. RBAC) does: false
   * answers 403 Forbidden. Tests use it to run a component under the RBAC rules the
   * Helm chart grants it. @default everything is allowed
   */
  authorize?: (request: RequestAttributes) => boolean
}

/** Namespaces a fresh cluster has. */
const initialNamespaces = ['default', 'kube-system', 'kube-public', 'kube-node-lease']

/** Shared state the request handlers read. */
export interface ServerContext {
  registry: ResourceRegistry
  store: ObjectStore
  rest: RestStorage
  options: Required<Omit<TestApiServerOptions, 'logger' | 'host' | 'port' | 'authorize'>>
  watches: Set<OpenWatch>
  logger: Logger
}

export class TestApiServer implements Startable {
  private server: Server | undefined
  private readonly ctx: ServerContext
  private readonly host: string
  private readonly port: number
  private readonly authorize: ((request: RequestAttributes) => boolean) | undefined

  constructor(options: TestApiServerOptions = {}) {
    this.authorize = options.authorize
    const registry = new ResourceRegistry()
    const store = new ObjectStore(options.historyWindowEvents ?? 10_000)
    this.ctx = {
      registry,
      store,
      rest: new RestStorage(registry, store),
      options: {
        historyWindowEvents: options.historyWindowEvents ?? 10_000,
        bookmarkIntervalMs: options.bookmarkIntervalMs ?? 1000,
        defaultWatchTimeoutSeconds: options.defaultWatchTimeoutSeconds ?? 1800,
        maxWatchBufferedBytes: options.maxWatchBufferedBytes ?? 16 * 1024 * 1024,
        maxRequestBodyBytes: options.maxRequestBodyBytes ?? 3 * 1024 * 1024,
      },
      watches: new Set(),
      logger: options.logger ?? silentLogger(),
    }
    this.host = options.host ?? '127.0.0.1'
    this.port = options.port ?? 0
    const namespaces = registry.lookup('', 'v1', 'namespaces')
    assert(namespaces !== undefined, 'namespaces are built in')
    for (const name of initialNamespaces) this.ctx.rest.create(namespaces, undefined, { metadata: { name } })
  }

  async start(): Promise<void> {
    if (this.server !== undefined) return
    const server = createServer((req, res) => void this.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, this.host, () => resolve())
    })
    this.server = server
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    for (const watch of [...this.ctx.watches]) watch.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** `http://127.0.0.1:<port>`; only valid after start(). */
  get url(): string {
    assert(this.server !== undefined, 'server not started')
    const address = this.server.address() as AddressInfo
    return `http://${this.host}:${address.port}`
  }

  /** The object store's current resourceVersion. */
  get resourceVersion(): number {
    return this.ctx.store.currentRevision()
  }

  /** Forgets all change history: watches and continue tokens from before now get 410 Expired. */
  compact(): void {
    this.ctx.store.compact()
  }

  /** A kubeconfig (YAML) pointing at this server, for kubectl and KubeConfig.loadFromFile. */
  kubeconfig(): string {
    // client-node refuses plain http unless TLS verification is off; kubectl ignores the flag for http.
    return yaml.dump({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'cairn-test', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'cairn-test', user: { token: 'cairn-test-token' } }],
      contexts: [{ name: 'cairn-test', context: { cluster: 'cairn-test', user: 'cairn-test', namespace: 'default' } }],
      'current-context': 'cairn-test',
      preferences: {},
    })
  }

  async writeKubeconfig(path: string): Promise<void> {
    await writeFile(path, this.kubeconfig(), { mode: 0o600 })
  }

  /** Creates every CRD in the YAML files of `directory` (what `kubectl apply -f crds/` does). */
  async installCrds(directory: string): Promise<string[]> {
    const crdType = this.ctx.registry.lookup('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')
    assert(crdType !== undefined, 'CRDs are built in')
    const names: string[] = []
    for (const file of (await readdir(directory)).filter((f) => /\.ya?ml$/.test(f)).sort()) {
      for (const doc of yaml.loadAll(await readFile(join(directory, file), 'utf8'))) {
        if (!isObject(doc as Json) || (doc as JsonObject).kind !== 'CustomResourceDefinition') continue
        const created = this.ctx.rest.create(crdType, undefined, doc as Json)
        names.push(String((created.metadata as JsonObject).name))
      }
    }
    return names
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    try {
      if (this.authorize !== undefined) {
        const attributes = requestAttributes(req.method ?? 'GET', url, req.headers.authorization)
        if (!this.authorize(attributes)) throw new ApiError(403, 'Forbidden', forbiddenMessage(attributes))
      }
      const handled = this.serveFixed(req, url, res)
      if (!handled) await handleResource(this.ctx, req, res, parseRoute(this.ctx.registry, url.pathname), url.searchParams)
    } catch (err) {
      const apiError = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `internal error: ${(err as Error).message}`)
      if (!(err instanceof ApiError)) this.ctx.logger.error({ err, url: req.url }, 'test apiserver: unexpected error')
      if (res.headersSent) res.end()
      else sendJson(res, apiError.code, apiError.toStatus())
    }
  }

  /** Discovery, version, health and OpenAPI: everything that is not a resource. */
  private serveFixed(req: IncomingMessage, url: URL, res: ServerResponse): boolean {
    const path = url.pathname.replace(/\/+$/, '')
    const { registry } = this.ctx
    let body: Json | undefined
    if (path === '/api') body = { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: new URL(this.url).host }] }
    else if (path === '/api/v1') body = registry.resourceList('', 'v1')
    else if (path === '/apis') body = registry.groupList()
    else if (/^\/apis\/[^/]+$/.test(path)) body = registry.apiGroup(path.split('/')[2] ?? '')
    else if (/^\/apis\/[^/]+\/[^/]+$/.test(path)) body = registry.resourceList(path.split('/')[2] ?? '', path.split('/')[3] ?? '')
    else if (path === '/version') body = { major: '1', minor: '32', gitVersion: 'v1.32.0-cairn-test', platform: 'linux/amd64' }
    else if (path === '/healthz' || path === '/readyz' || path === '/livez') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok')
      return true
    } else if (path === '/openapi/v3') body = openApiV3Root(registry)
    else if (path.startsWith('/openapi/v3/')) body = openApiV3Document(registry, path.slice('/openapi/v3/'.length))
    else return false
    if (req.method !== 'GET') throw methodNotAllowed(`the server does not allow this method on the requested resource`)
    if (body === undefined) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource')
    sendJson(res, 200, body)
    return true
  }
}

export function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

/** Reads a request body up to `maxBytes`; larger bodies are refused with 413. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length
    if (total > maxBytes) throw new ApiError(413, 'BadRequest', `request entity too large: limit is ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

export function parseJsonBody(text: string): Json {
  try {
    return JSON.parse(text) as Json
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded: ${(err as Error).message}`)
  }
}
