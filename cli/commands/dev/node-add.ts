/**
 * `cairn node add` on the dev side (ADR 0023): the request a running `cairn dev`
 * accepts on its status server (`POST /v1/nodes`), its validation, and the marker
 * file that makes an added node part of every later run.
 *
 * Only the dev process can start a storage-node child and supervise it, so the CLI
 * asks it over loopback; the cluster map is changed by dev only once the new node
 * serves, so no write is ever placed on a member that is not there yet.
 */
import express, { type Express } from 'express'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { z } from 'zod'
import { CairnError, errorKind, InvalidArgumentError } from '../../../core/errors.js'

/** A failure domain is a label value: short, lower-case, DNS-1123-like. */
const failureDomain = z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/, 'expected a DNS-1123 label such as rack-2')

/** What `cairn node add` asks for. */
export const nodeAddRequestSchema = z
  .object({
    /** @default the new node's id (a domain of its own) */
    failureDomain: failureDomain.optional(),
    /** Placement weight (HRW), proportional to capacity. @default 1 */
    weight: z.number().finite().positive().max(1_000_000).optional(),
  })
  .strict()
export type NodeAddRequest = z.infer<typeof nodeAddRequestSchema>

/** What dev answers once the node serves and the map names it. */
export interface NodeAddResult {
  id: string
  address: string
  meshAddress: string
  peerId: string
  failureDomain: string
  weight: number
  /** The cluster map epoch that first named the node. */
  epoch: number
}

/**
 * Checks a request body.
 * @throws InvalidArgumentError naming the first bad field
 */
export function parseNodeAddRequest(body: unknown): NodeAddRequest {
  const parsed = nodeAddRequestSchema.safeParse(body ?? {})
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  throw new InvalidArgumentError(`node add: ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`, { cause: parsed.error })
}

/** The marker `nodes/node-N/added.json`: the node's domain and weight, for later runs. */
const markerSchema = z.object({ addedAt: z.string(), failureDomain: failureDomain.optional(), weight: z.number().finite().positive().optional() })
export type NodeAddedMarker = z.infer<typeof markerSchema>

/** An `added.json` that exists but is not one this version writes: the node's domain and weight are unknown. */
export class NodeMarkerError extends CairnError {
  override readonly name = 'NodeMarkerError'
  readonly kind = 'failed-precondition'
}

/** Writes the marker (fsync is not needed: losing it loses a node not yet in the map, or one a restart re-adds with defaults). */
export async function writeNodeAddedMarker(path: string, request: NodeAddRequest): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const marker: NodeAddedMarker = { addedAt: new Date().toISOString(), ...request }
  await writeFile(path, `${JSON.stringify(marker)}\n`)
}

/**
 * The marker, or undefined when the node was not added by `cairn node add`.
 * @throws NodeMarkerError when the file exists but does not parse
 */
export async function readNodeAddedMarker(path: string): Promise<NodeAddedMarker | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new NodeMarkerError(`cannot read ${path}`, { cause: err })
  }
  try {
    return markerSchema.parse(JSON.parse(text))
  } catch (err) {
    throw new NodeMarkerError(`${path} is not a node-add marker; fix or delete it`, { cause: err })
  }
}

/** Indexes N of the `node-N` directories under `nodesDir` (removed ones included: an id is never reused). */
export async function nodeIndexesOnDisk(nodesDir: string): Promise<number[]> {
  const entries = await readdir(nodesDir).catch(() => [] as string[])
  return entries.flatMap((e) => {
    const m = /^node-(\d+)$/.exec(e)
    return m === null ? [] : [Number(m[1])]
  })
}

function httpStatus(err: unknown): number {
  switch (errorKind(err)) {
    case 'invalid-argument':
      return 400
    case 'failed-precondition':
    case 'already-exists':
    case 'aborted':
      return 409
    case 'unavailable':
      return 503
    default:
      return 500
  }
}

/**
 * `POST /v1/nodes` with a JSON {@link NodeAddRequest}: starts a storage node, adds it
 * to the cluster map and answers {@link NodeAddResult}; errors answer
 * `{error: {name, kind, message}}`. Like the fault API it exists only in `cairn dev`,
 * whose status server listens on loopback.
 */
export function mountNodeApi(app: Express, add: (request: NodeAddRequest) => Promise<NodeAddResult>): void {
  app.post('/v1/nodes', express.json({ limit: '4kb' }), async (req, res) => {
    try {
      res.json(await add(parseNodeAddRequest(req.body)))
    } catch (err) {
      const e = err instanceof CairnError ? err : undefined
      res.status(httpStatus(err)).json({ error: { name: e?.name ?? 'InternalError', kind: e?.kind ?? 'internal', message: (err as Error).message } })
    }
  })
}
