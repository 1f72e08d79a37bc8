/**
 * `cairn node list|add|remove` against the control plane in --data-dir (a `cairn dev`).
 * Add asks the running `cairn dev` (its status server, ADR 0023) to start one more
 * storage node and put it in the cluster map; the other nodes then move the shards
 * whose placement now names it (rebalance).
 * Remove takes a member out of the cluster map for good: placement no longer names
 * it, so the other nodes' repairers rebuild its shards on the remaining members, and
 * the running `cairn dev` stops its process and never starts it again.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve as resolvePath } from 'node:path'
import type { Command } from '../main.js'
import type { ClusterMember } from '../../control-plane/types.js'
import { FailedPreconditionError } from '../../control-plane/types.js'
import { CairnError, type ErrorKind } from '../../core/errors.js'
import { RemoteError } from '../../core/grpc.js'
import { silentLogger } from '../../core/logger.js'
import { DEV_BLOCK_STORE, DEV_POLICY, updateMembers } from './dev/bootstrap.js'
import type { NodeAddRequest, NodeAddResult } from './dev/node-add.js'
import { CliUsageError, formatFromArgv, openContext, outputFormat, parseCli, printTable, runCli, type CliContext, type OutputFormat } from './dev/client.js'
import { devPaths, readDevState, type DevState } from './dev/state.js'

/** Starting the node and waiting for it to serve can take a while on a loaded machine; dev itself gives up after 90 s. */
const NODE_ADD_TIMEOUT_MS = 150_000

/** The cluster map has no member with that id. */
export class UnknownMemberError extends CairnError {
  override readonly name = 'UnknownMemberError'
  readonly kind = 'not-found'
}

const USAGE = {
  list: 'cairn node list',
  add: 'cairn node add [--failure-domain NAME] [--weight W]',
  remove: 'cairn node remove ID',
} as const
type Sub = keyof typeof USAGE

const COMMON = '[--data-dir .cairn] [--output table|json]'

export const command: Command = {
  summary: `manage storage nodes of a cairn dev: cairn node ${Object.keys(USAGE).join('|')} ... ${COMMON}`,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === undefined || !(sub in USAGE)) {
      console.error(`usage:\n${Object.values(USAGE).map((u) => `  ${u} ${COMMON}`).join('\n')}`)
      return 2
    }
    return runCli(`node ${sub}`, formatFromArgv(rest), () => runSub(sub as Sub, rest))
  },
}

/** One member as listed: the map's view joined with the dev's process view. */
export interface NodeRow {
  id: string
  state: ClusterMember['state']
  address: string
  meshAddress: string | null
  peerId: string
  failureDomain: string
  weight: number
  /** The process state in the running dev (`up`, `killed`, ...), or null when no dev runs. */
  process: string | null
}

async function runSub(sub: Sub, argv: readonly string[]): Promise<void> {
  const flags = sub === 'add' ? { 'failure-domain': undefined, weight: undefined } : {}
  const { values, positionals } = parseCli(argv, flags, sub === 'remove' ? 1 : 0, USAGE[sub])
  const format = outputFormat(values.output)
  const dataDir = resolvePath(values['data-dir'] as string)
  if (sub === 'add') return addNode(dataDir, format, values)
  const ctx = await openContext(dataDir, values.engine)
  try {
    if (sub === 'list') return printRows(format, await listNodes(ctx, await readDevState(dataDir)))
    const removed = await removeNode(ctx, dataDir, positionals[0] as string)
    if (format === 'json') console.log(JSON.stringify(removed))
    else console.log(`node ${removed.removed} left the cluster map (epoch ${removed.epoch}); its shards are rebuilt on the remaining nodes`)
  } finally {
    await ctx.close()
  }
}

async function listNodes(ctx: CliContext, dev: DevState | undefined): Promise<{ epoch: number; nodes: NodeRow[] }> {
  const map = await ctx.cp.getClusterMap(DEV_BLOCK_STORE)
  const nodes = [...map.members]
    .sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }))
    .map((m) => ({
      id: m.id,
      state: m.state,
      address: m.address,
      meshAddress: m.meshAddress ?? null,
      peerId: m.peerId,
      failureDomain: m.failureDomain,
      weight: m.weight,
      process: dev?.nodes.find((n) => n.id === m.id)?.state ?? null,
    }))
  return { epoch: map.epoch, nodes }
}

function printRows(format: OutputFormat, result: { epoch: number; nodes: NodeRow[] }): void {
  if (format === 'json') return void console.log(JSON.stringify(result))
  printTable(
    ['ID', 'STATE', 'PROCESS', 'ADDRESS', 'MESH', 'DOMAIN', 'WEIGHT', 'PEER ID'],
    result.nodes.map((n) => [n.id, n.state, n.process ?? '-', n.address, n.meshAddress ?? '-', n.failureDomain, String(n.weight), n.peerId]),
  )
  console.log(`cluster map epoch ${result.epoch}`)
}

/**
 * Takes `id` out of the map. Refused when the members left could not hold a chunk's
 * k+m shards on distinct nodes: that would make every write fail.
 * @throws UnknownMemberError when the map has no such member
 * @throws FailedPreconditionError when fewer than k+m members would remain
 */
async function removeNode(ctx: CliContext, dataDir: string, id: string): Promise<{ removed: string; epoch: number }> {
  const before = await ctx.cp.getClusterMap(DEV_BLOCK_STORE)
  if (!before.members.some((m) => m.id === id)) throw new UnknownMemberError(`no member ${JSON.stringify(id)} in the cluster map of ${DEV_BLOCK_STORE} (epoch ${before.epoch})`)
  const policy = await ctx.cp.getStoragePolicy(DEV_POLICY)
  const needed = policy.dataShards + policy.parityShards
  const remaining = before.members.filter((m) => m.id !== id && m.state !== 'down').length
  if (remaining < needed) {
    throw new FailedPreconditionError(`removing ${id} leaves ${remaining} serving nodes; the ${DEV_POLICY} policy needs k+m = ${needed} (start cairn dev with a larger --storage-nodes first)`)
  }
  // The marker first: should the dev restart before it sees the new map, it still does not bring the node back.
  const match = /^node-(\d+)$/.exec(id)
  if (match !== null) {
    const path = devPaths(dataDir).nodeRemoved(Number(match[1]))
    await mkdir(join(path, '..'), { recursive: true })
    await writeFile(path, `${JSON.stringify({ removedAt: new Date().toISOString() })}\n`)
  }
  const map = await updateMembers(ctx.cp, (ms) => ms.filter((m) => m.id !== id), silentLogger())
  return { removed: id, epoch: map.epoch }
}

/**
 * Asks the running dev to start a node and add it to the map; prints what it answers.
 * @throws FailedPreconditionError when no `cairn dev` runs for `dataDir`
 * @throws CliUsageError when --weight is not a number
 * @throws RemoteError carrying dev's error name (InvalidArgumentError, ChildStartError, ...)
 */
async function addNode(dataDir: string, format: OutputFormat, values: Record<string, string | undefined>): Promise<void> {
  const request: NodeAddRequest = {}
  if (values['failure-domain'] !== undefined) request.failureDomain = values['failure-domain']
  if (values.weight !== undefined) {
    const weight = Number(values.weight)
    if (values.weight.trim() === '' || !Number.isFinite(weight)) throw new CliUsageError(`--weight must be a number, got ${JSON.stringify(values.weight)}; usage: ${USAGE.add}`)
    request.weight = weight
  }
  const dev = await readDevState(dataDir)
  if (dev === undefined || dev.statusUrl === '') throw new FailedPreconditionError(`no running cairn dev for ${dataDir}; a node is added to a running dev (start it with 'cairn dev --data-dir ${dataDir}')`)
  let res: Response
  try {
    res = await fetch(`${dev.statusUrl}v1/nodes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
      signal: AbortSignal.timeout(NODE_ADD_TIMEOUT_MS),
    })
  } catch (err) {
    throw new RemoteError('unavailable', undefined, `cannot reach cairn dev at ${dev.statusUrl}: ${(err as Error).message}`, { cause: err })
  }
  const body = (await res.json().catch(() => undefined)) as { error?: { name?: string; kind?: ErrorKind; message?: string } } | NodeAddResult | undefined
  if (!res.ok || body === undefined || 'error' in body) {
    const error = body !== undefined && 'error' in body ? body.error : undefined
    throw new RemoteError(error?.kind ?? 'internal', error?.name, error?.message ?? `cairn dev answered HTTP ${res.status}`)
  }
  const added = body as NodeAddResult
  if (format === 'json') return void console.log(JSON.stringify(added))
  console.log(`node ${added.id} joined the cluster map (epoch ${added.epoch}) at ${added.address}, failure domain ${added.failureDomain}, weight ${added.weight}; shards rebalance onto it in the background`)
}
