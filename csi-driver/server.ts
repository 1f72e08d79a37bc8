/**
 * The CSI gRPC server: one Unix socket, the Identity service always, the Controller
 * and Node services when the mode asks for them. Every call goes through one
 * wrapper that converts the wire request to its typed form, logs it with secrets
 * stripped, times it, maps any thrown error to its gRPC code (core/grpc.ts) and
 * counts errors by code. Services never see a wire object or a gRPC type.
 */
import { mkdir, rm, stat } from 'node:fs/promises'
import { dirname, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadSync } from '@grpc/proto-loader'
import {
  Server,
  ServerCredentials,
  loadPackageDefinition,
  status as Status,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServerUnaryCall,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js'
import { Counter, Histogram, type Registry } from 'prom-client'
import { CairnError, InvalidArgumentError, errorKind } from '../core/errors.js'
import { grpcCodeForKind, toGrpcStatus } from '../core/grpc.js'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import * as c from './convert.js'
import type { ControllerService, IdentityService, NodeService } from './types.js'

/** proto/csi/v1/csi.proto, from the compiled file in dist/csi-driver/. */
export const CSI_PROTO_PATH = fileURLToPath(new URL('../../proto/csi/v1/csi.proto', import.meta.url))

/** Request fields never logged: every field the spec marks `csi_secret`, and mount flags, which the spec says MAY hold secrets. */
export const REDACTED_FIELDS: ReadonlySet<string> = new Set(['secrets', 'mount_flags'])
const REDACTED = '***stripped***'

/** The three CSI services as grpc-js constructors. */
export function loadCsiServices(): { Identity: ServiceClientConstructor; Controller: ServiceClientConstructor; Node: ServiceClientConstructor } {
  const pkg = loadPackageDefinition(loadSync(CSI_PROTO_PATH, { ...c.CSI_PROTO_LOADER_OPTIONS }))
  const v1 = (pkg.csi as GrpcObject).v1 as GrpcObject
  return {
    Identity: v1.Identity as ServiceClientConstructor,
    Controller: v1.Controller as ServiceClientConstructor,
    Node: v1.Node as ServiceClientConstructor,
  }
}

/**
 * The socket path of a CSI endpoint: `unix:///abs/path` or `unix:path` (relative to the working directory).
 * @throws InvalidArgumentError for any other scheme: CSI is served on Unix sockets only.
 */
export function socketPathOf(endpoint: string): string {
  const match = /^unix:(?:\/\/)?(.+)$/.exec(endpoint)
  if (!match) throw new InvalidArgumentError(`CSI endpoint must be unix:///path/to/socket, got ${JSON.stringify(endpoint)}`)
  return resolvePath(match[1] as string)
}

/** A copy of `value` with every redacted field's value replaced, at any depth. */
export function stripSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripSecrets)
  if (typeof value !== 'object' || value === null) return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = REDACTED_FIELDS.has(k) ? REDACTED : stripSecrets(v)
  return out
}

export interface CsiServerInit {
  /** `unix:///csi/csi.sock`. A stale socket file there is replaced. */
  endpoint: string
}

export interface CsiServerComponents {
  logger: Logger
  registry: Registry
  identity: IdentityService
  /** Served in controller and all modes. @default none */
  controller?: ControllerService
  /** Served in node and all modes. @default none */
  node?: NodeService
}

/** One RPC: wire request → typed call → wire response. */
type Rpc = (request: c.Wire) => Promise<c.Wire>

export class CsiServer implements Startable {
  private server: Server | undefined
  private readonly socketPath: string
  private readonly latency: Histogram<'method'>
  private readonly errors: Counter<'method' | 'code'>

  constructor(
    init: CsiServerInit,
    private readonly components: CsiServerComponents,
  ) {
    this.socketPath = socketPathOf(init.endpoint)
    this.latency = new Histogram({
      name: 'cairn_csi_request_duration_seconds',
      help: 'Time to answer a CSI call, by method',
      labelNames: ['method'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60],
      registers: [components.registry],
    })
    this.errors = new Counter({
      name: 'cairn_csi_request_errors_total',
      help: 'CSI calls answered with an error, by method and gRPC code',
      labelNames: ['method', 'code'],
      registers: [components.registry],
    })
  }

  async start(): Promise<void> {
    if (this.server !== undefined) return
    await this.removeStaleSocket()
    const services = loadCsiServices()
    const server = new Server()
    server.addService(services.Identity.service, this.wrapAll(identityRpcs(this.components.identity)))
    if (this.components.controller !== undefined) server.addService(services.Controller.service, this.wrapAll(controllerRpcs(this.components.controller)))
    if (this.components.node !== undefined) server.addService(services.Node.service, this.wrapAll(nodeRpcs(this.components.node)))
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${this.socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
    })
    this.server = server
    this.components.logger.info(
      { endpoint: `unix://${this.socketPath}`, controller: this.components.controller !== undefined, node: this.components.node !== undefined },
      'CSI server listening',
    )
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    // In-flight calls may finish briefly; a CO retries anything cut off, every RPC being idempotent.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => server.forceShutdown(), 5_000)
      server.tryShutdown(() => {
        clearTimeout(timer)
        resolve()
      })
    })
    await rm(this.socketPath, { force: true })
  }

  /** The socket path served. */
  get path(): string {
    return this.socketPath
  }

  private async removeStaleSocket(): Promise<void> {
    await mkdir(dirname(this.socketPath), { recursive: true })
    const found = await stat(this.socketPath).catch(() => undefined)
    if (found === undefined) return
    // Never delete a regular file or directory someone pointed us at by mistake.
    if (!found.isSocket()) throw new InvalidArgumentError(`CSI endpoint ${this.socketPath} exists and is not a socket`)
    await rm(this.socketPath, { force: true })
  }

  private wrapAll(rpcs: Record<string, Rpc>): UntypedServiceImplementation {
    const impl: UntypedServiceImplementation = {}
    for (const [method, rpc] of Object.entries(rpcs)) impl[method] = this.wrap(method, rpc)
    return impl
  }

  /** The logging, metrics and error-mapping interceptor around one RPC. */
  private wrap(method: string, rpc: Rpc) {
    const logger = this.components.logger
    return (call: ServerUnaryCall<c.Wire, c.Wire>, callback: sendUnaryData<c.Wire>): void => {
      const started = process.hrtime.bigint()
      const request = call.request ?? {}
      logger.debug({ method, request: stripSecrets(request) }, 'CSI request')
      const finish = (code: Status): void => {
        this.latency.observe({ method }, Number(process.hrtime.bigint() - started) / 1e9)
        if (code !== Status.OK) this.errors.inc({ method, code: Status[code] ?? String(code) })
      }
      rpc(request).then(
        (response) => {
          finish(Status.OK)
          logger.debug({ method, response: stripSecrets(response) }, 'CSI response')
          callback(null, response)
        },
        (err: unknown) => {
          const code = grpcCodeForKind(errorKind(err))
          finish(code)
          // Every refused call logs its exact reason; a foreign error is a bug and logs its stack.
          if (err instanceof CairnError) logger.info({ method, code: Status[code], err: { name: err.name, message: err.message } }, 'CSI request refused')
          else logger.error({ method, err }, 'CSI request failed')
          callback(toGrpcStatus(err), null)
        },
      )
    }
  }
}

function identityRpcs(s: IdentityService): Record<string, Rpc> {
  return {
    GetPluginInfo: async () => c.pluginInfoToWire(await s.getPluginInfo()),
    GetPluginCapabilities: async () => c.pluginCapabilitiesToWire(await s.getPluginCapabilities()),
    Probe: async () => ({ ready: { value: (await s.probe()).ready } }),
  }
}

function controllerRpcs(s: ControllerService): Record<string, Rpc> {
  return {
    CreateVolume: async (w) => ({ volume: c.volumeToWire(await s.createVolume(c.createVolumeFromWire(w))) }),
    DeleteVolume: async (w) => (await s.deleteVolume(c.deleteVolumeFromWire(w)), {}),
    ControllerPublishVolume: async (w) => ({ publish_context: (await s.controllerPublishVolume(c.publishFromWire(w))).publishContext }),
    ControllerUnpublishVolume: async (w) => (await s.controllerUnpublishVolume(c.unpublishFromWire(w)), {}),
    ValidateVolumeCapabilities: async (w) => c.validateToWire(await s.validateVolumeCapabilities(c.validateFromWire(w))),
    ListVolumes: async (w) => c.listVolumesToWire(await s.listVolumes(c.listFromWire(w))),
    GetCapacity: async (w) => c.getCapacityToWire(await s.getCapacity(c.getCapacityFromWire(w))),
    ControllerGetCapabilities: async () => c.controllerCapabilitiesToWire(await s.controllerGetCapabilities()),
    CreateSnapshot: async (w) => ({ snapshot: c.snapshotToWire(await s.createSnapshot(c.createSnapshotFromWire(w))) }),
    DeleteSnapshot: async (w) => (await s.deleteSnapshot(c.deleteSnapshotFromWire(w)), {}),
    ListSnapshots: async (w) => c.listSnapshotsToWire(await s.listSnapshots(c.listSnapshotsFromWire(w))),
    ControllerExpandVolume: async (w) => c.expandToWire(await s.controllerExpandVolume(c.expandFromWire(w))),
    ControllerGetVolume: async (w) => c.getVolumeToWire(await s.controllerGetVolume({ volumeId: typeof w.volume_id === 'string' ? w.volume_id : '' })),
    // ControllerModifyVolume is left to grpc-js's default handler: UNIMPLEMENTED, as MODIFY_VOLUME is not advertised.
  }
}

function nodeRpcs(s: NodeService): Record<string, Rpc> {
  return {
    NodeStageVolume: async (w) => (await s.nodeStageVolume(c.nodeStageFromWire(w)), {}),
    NodeUnstageVolume: async (w) => (await s.nodeUnstageVolume(c.nodeUnstageFromWire(w)), {}),
    NodePublishVolume: async (w) => (await s.nodePublishVolume(c.nodePublishFromWire(w)), {}),
    NodeUnpublishVolume: async (w) => (await s.nodeUnpublishVolume(c.nodeUnpublishFromWire(w)), {}),
    NodeGetVolumeStats: async (w) => c.nodeStatsToWire(await s.nodeGetVolumeStats(c.nodeStatsFromWire(w))),
    NodeExpandVolume: async (w) => ({ capacity_bytes: (await s.nodeExpandVolume(c.nodeExpandFromWire(w))).capacityBytes }),
    NodeGetCapabilities: async () => c.nodeCapabilitiesToWire(await s.nodeGetCapabilities()),
    NodeGetInfo: async () => c.nodeInfoToWire(await s.nodeGetInfo()),
  }
}
