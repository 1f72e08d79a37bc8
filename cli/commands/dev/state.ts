/**
 * What `cairn dev` keeps under its data directory besides the control plane and the
 * storage nodes' data: `dev.json` (the bound addresses of a running dev, for the CLI
 * and tests) and each node's `ports.json` (so a node keeps its address across
 * restarts and the cluster map does not churn).
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { CairnError } from '../../../core/errors.js'
import { freePort, isPortFree } from '../../../core/free-port.js'

/** Files and folders under the data directory. */
export function devPaths(dataDir: string) {
  return {
    controlPlane: join(dataDir, 'control-plane.sqlite'),
    state: join(dataDir, 'dev.json'),
    nodesDir: join(dataDir, 'nodes'),
    node: (index: number) => join(dataDir, 'nodes', `node-${index}`),
    nodePorts: (index: number) => join(dataDir, 'nodes', `node-${index}`, 'ports.json'),
    /** Written by `cairn node remove`: the node left the cluster map and is not started again. */
    nodeRemoved: (index: number) => join(dataDir, 'nodes', `node-${index}`, 'removed.json'),
    /** Written by `cairn node add` before the node starts: it is started on every later run, with its domain and weight. */
    nodeAdded: (index: number) => join(dataDir, 'nodes', `node-${index}`, 'added.json'),
  }
}

/** `dev.json` is missing, unreadable or not what this version writes. */
export class DevStateError extends CairnError {
  override readonly name = 'DevStateError'
  readonly kind = 'failed-precondition'
}

const childSchema = z.object({
  pid: z.number().int().nullable(),
  state: z.enum(['starting', 'up', 'backoff', 'stopping', 'stopped', 'killed']),
  restarts: z.number().int(),
})

export const devStateSchema = z.object({
  /** The `cairn dev` process. */
  pid: z.number().int(),
  startedAt: z.string(),
  dataDir: z.string(),
  volume: z.string(),
  nbd: z.object({ address: z.string(), uri: z.string() }),
  statusUrl: z.string(),
  engine: childSchema.extend({ adminAddress: z.string().nullable(), nodeId: z.string() }),
  nodes: z.array(
    childSchema.extend({
      id: z.string(),
      address: z.string(),
      metricsAddress: z.string(),
      dataDir: z.string(),
      /** Mesh address and peer id (absent in files written before the mesh). */
      meshAddress: z.string().optional(),
      peerId: z.string().optional(),
    }),
  ),
})
export type DevState = z.infer<typeof devStateSchema>

/** Writes `dev.json` atomically (readers never see half a file). */
export async function writeDevState(path: string, state: DevState): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`)
  await rename(tmp, path)
}

/** The state of a running `cairn dev`, or undefined when none is recorded or its process is gone. */
export async function readDevState(dataDir: string): Promise<DevState | undefined> {
  const state = await readDevStateFile(dataDir)
  return state !== undefined && isAlive(state.pid) ? state : undefined
}

/** `dev.json` as written, whether or not its process still runs (a crashed dev leaves it behind). */
export async function readDevStateFile(dataDir: string): Promise<DevState | undefined> {
  let text: string
  try {
    text = await readFile(devPaths(dataDir).state, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new DevStateError(`cannot read ${devPaths(dataDir).state}: ${(err as Error).message}`, { cause: err })
  }
  let parsed: DevState
  try {
    parsed = devStateSchema.parse(JSON.parse(text))
  } catch (err) {
    throw new DevStateError(`${devPaths(dataDir).state} is not a cairn dev state file`, { cause: err })
  }
  return parsed
}

export async function removeDevState(dataDir: string): Promise<void> {
  await rm(devPaths(dataDir).state, { force: true })
}

/** True if a process with this pid exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

const port = z.number().int().min(1).max(65535)
// meshPort is optional so that ports.json files written before the mesh still load (and keep their other ports).
const portsSchema = z.object({ grpcPort: port, metricsPort: port, meshPort: port.optional() })
export type NodePorts = Required<z.infer<typeof portsSchema>>

/**
 * The node's ports: the persisted ones while they are still free, else new free ones
 * (persisted). A port another program took since the last run is replaced, which
 * changes the node's address and so the cluster map.
 */
export async function nodePorts(dataDir: string, index: number, host: string, taken: Set<number>): Promise<NodePorts> {
  const path = devPaths(dataDir).nodePorts(index)
  const saved = await readFile(path, 'utf8').then(
    (text) => portsSchema.safeParse(JSON.parse(text)).data,
    () => undefined,
  )
  const usable = async (p: number): Promise<boolean> => !taken.has(p) && (await isPortFree(host, p))
  let ports: NodePorts | undefined
  if (saved !== undefined && saved.grpcPort !== saved.metricsPort && (await usable(saved.grpcPort)) && (await usable(saved.metricsPort))) {
    taken.add(saved.grpcPort).add(saved.metricsPort)
    const meshOk = saved.meshPort !== undefined && saved.meshPort !== saved.grpcPort && saved.meshPort !== saved.metricsPort && (await usable(saved.meshPort))
    if (meshOk) {
      taken.add(saved.meshPort as number)
      return saved as NodePorts
    }
    ports = { grpcPort: saved.grpcPort, metricsPort: saved.metricsPort, meshPort: await freePort(host, taken) }
  } else {
    ports = { grpcPort: await freePort(host, taken), metricsPort: await freePort(host, taken), meshPort: await freePort(host, taken) }
  }
  await mkdir(devPaths(dataDir).node(index), { recursive: true })
  await writeFile(path, `${JSON.stringify(ports)}\n`)
  return ports
}

