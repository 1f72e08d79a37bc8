/**
 * The node plugin's admin API: how a CSI controller in a cluster reaches the engine
 * that holds an attached volume on this node, to fold every acknowledged write into
 * the head before a snapshot (or to pass on a new size). The per-volume engines
 * listen on loopback only; this API, on the plugin's metrics port, forwards to them.
 *
 *   POST /v1/volumes/:name/checkpoint   the engine's checkpoint; answers the Volume
 *   POST /v1/volumes/:name/resize       {"sizeBytes": N}: the engine's resize
 *
 * Paths and error bodies are the engine admin API's (engine/host/admin-api.ts), so the
 * controller's AdminClient speaks to both. With a cluster token, every request must
 * carry it as `authorization: Bearer …` (401 otherwise): the port is reachable from
 * the pod network.
 */
import express, { type Express, type Request, type Response } from 'express'
import { CairnError, InvalidArgumentError, errorKind } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { AdminClient } from '../engine/host/admin-client.js'
import { HTTP_STATUS_BY_KIND } from '../engine/host/admin-api.js'
import { CsiNotFoundError } from './errors.js'
import type { NodeStateStore } from './state.js'

/** A request without the cluster token. */
export class NodeAdminUnauthenticatedError extends CairnError {
  override readonly name = 'NodeAdminUnauthenticatedError'
  readonly kind = 'unauthenticated'
}

export interface NodeAdminComponents {
  store: NodeStateStore
  /** Checks the `authorization` header (the cluster token); undefined: no check (loopback, `cairn dev`). */
  authorize?: (header: string | undefined) => Promise<boolean>
  logger: Logger
}

/** Adds the node admin routes to `app` (pass as the health server's `routes`). */
export function mountNodeAdminApi(app: Express, components: NodeAdminComponents): void {
  const json = express.json({ limit: '16kb', strict: true })
  const handle = (action: (engine: AdminClient, volume: string, req: Request) => Promise<unknown>) => async (req: Request, res: Response) => {
    try {
      if (components.authorize !== undefined && !(await components.authorize(req.headers.authorization))) {
        throw new NodeAdminUnauthenticatedError('the node admin API requires the cluster token')
      }
      const volume = String(req.params.name)
      const engine = (await components.store.read(volume))?.engine
      if (engine == null) throw new CsiNotFoundError(`volume ${volume} has no engine on this node`)
      res.json(await action(new AdminClient({ address: engine.adminAddress }), volume, req))
    } catch (err) {
      const kind = errorKind(err)
      const name = err instanceof CairnError && 'remoteName' in err ? String(err.remoteName) : err instanceof Error ? err.name : 'Error'
      const message = err instanceof Error ? err.message : String(err)
      components.logger.info({ err: { name, kind, message } }, 'node admin request refused')
      res.status(HTTP_STATUS_BY_KIND[kind]).json({ error: { name, kind, message } })
    }
  }
  app.post('/v1/volumes/:name/checkpoint', handle((engine, volume) => engine.checkpoint(volume)))
  app.post(
    '/v1/volumes/:name/resize',
    json,
    handle((engine, volume, req) => {
      const sizeBytes = (req.body as { sizeBytes?: unknown } | undefined)?.sizeBytes
      if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new InvalidArgumentError('sizeBytes must be a positive integer')
      return engine.resize(volume, sizeBytes)
    }),
  )
}
