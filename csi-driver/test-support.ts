/**
 * Test support for the CSI driver: a real CSI server on a temporary Unix socket over
 * a given control plane, and a promise-based gRPC client for it. Tests talk to the
 * driver only through the socket, as a CO would.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { credentials, type Client, type ServiceError, type status as Status } from '@grpc/grpc-js'
import { Registry } from 'prom-client'
import assert from 'node:assert/strict'
import type { Logger } from '../core/logger.js'
import { silentLogger } from '../core/logger.js'
import type { ControlPlane, Volume } from '../control-plane/types.js'
import { CsiControllerService, type NodeDirectory } from './controller-service.js'
import type { VolumeEngines } from './engines.js'
import { CsiIdentityService, controlPlaneReadiness } from './identity-service.js'
import { KeyedLocks } from './locks.js'
import { CsiServer, loadCsiServices } from './server.js'
import type { Wire } from './convert.js'
import type { NodeService } from './types.js'

/** VolumeEngines that records what the controller asked, and fails on demand. */
export class RecordingEngines implements VolumeEngines {
  readonly checkpoints: string[] = []
  readonly resizes: Array<{ volume: string; sizeBytes: number }> = []
  /** When set, checkpoints of attached volumes throw it. */
  failWith: Error | undefined

  async checkpoint(volume: Volume): Promise<void> {
    if (volume.status.attachment === null) return
    if (this.failWith !== undefined) throw this.failWith
    this.checkpoints.push(volume.name)
  }

  async resize(volume: Volume): Promise<void> {
    if (volume.status.attachment !== null) this.resizes.push({ volume: volume.name, sizeBytes: volume.sizeBytes })
  }
}

export type Rpc = (method: string, request?: Wire) => Promise<Wire>

export interface DriverHarness {
  identity: Rpc
  controller: Rpc
  node: Rpc
  locks: KeyedLocks
  engines: RecordingEngines
  registry: Registry
  server: CsiServer
  stop(): Promise<void>
}

export interface DriverOptions {
  logger?: Logger
  node?: NodeService
  defaultBlockStore?: string
  defaultStoragePolicy?: string
  nodes?: NodeDirectory
}

/** Starts Identity + Controller (+ Node when given) on a fresh socket over `cp`. */
export async function startDriver(cp: ControlPlane, options: DriverOptions = {}): Promise<DriverHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-csi-'))
  const endpoint = `unix://${join(dir, 'csi.sock')}`
  const logger = options.logger ?? silentLogger()
  const locks = new KeyedLocks()
  const engines = new RecordingEngines()
  const registry = new Registry()
  const controller = new CsiControllerService(
    { defaultBlockStore: options.defaultBlockStore ?? 'bs', defaultStoragePolicy: options.defaultStoragePolicy ?? 'pol', defaultVolumeSizeBytes: 1024 * 1024 },
    { controlPlane: cp, engines, locks, logger, nodes: options.nodes },
  )
  const identity = new CsiIdentityService({ version: '0.1.0', controller: true }, { readiness: controlPlaneReadiness(cp), logger })
  const server = new CsiServer({ endpoint }, { logger, registry, identity, controller, node: options.node })
  await server.start()
  const services = loadCsiServices()
  const clients: Client[] = [services.Identity, services.Controller, services.Node].map((S) => new S(endpoint, credentials.createInsecure()))
  const rpc = (client: Client): Rpc => (method, request = {}) =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, (req: Wire, cb: (err: ServiceError | null, res: Wire) => void) => void>)[method]
      assert.ok(fn !== undefined, `no method ${method}`)
      fn.call(client, request, (err, res) => (err ? reject(err) : resolve(res)))
    })
  return {
    identity: rpc(clients[0] as Client),
    controller: rpc(clients[1] as Client),
    node: rpc(clients[2] as Client),
    locks,
    engines,
    registry,
    server,
    async stop() {
      for (const c of clients) c.close()
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Asserts that `call` fails with gRPC `code`. */
export async function rejectsWith(call: Promise<unknown>, code: Status, why?: string): Promise<ServiceError> {
  try {
    await call
  } catch (err) {
    const se = err as ServiceError
    assert.equal(se.code, code, `${why ?? 'call'}: expected code ${code}, got ${se.code} (${se.details})`)
    return se
  }
  assert.fail(`${why ?? 'call'}: expected code ${code}, but it succeeded`)
}

export const MOUNT_SNW: Wire = { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }
export const BLOCK_SNW: Wire = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }

/** A capability with `mode` and a mount access type (fs `fsType`). */
export function mountCap(mode: string, fsType = 'ext4'): Wire {
  return { mount: { fs_type: fsType, mount_flags: [] }, access_mode: { mode } }
}
