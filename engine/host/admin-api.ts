/**
 * The engine's admin API, mounted on its health server: the operations that must go
 * through the process holding a volume, so that they see every acknowledged write.
 *
 *   GET  /v1/volumes                      volumes of the block store, with engine state
 *   POST /v1/volumes/:name/checkpoint     fold acknowledged writes into the head
 *   POST /v1/volumes/:name/snapshots      {"name": "..."}: snapshot
 *   POST /v1/volumes/:name/clones         {"name": "..."}: clone into a new volume
 *   POST /v1/volumes/:name/resize         {"sizeBytes": N}: grow
 *   DELETE /v1/volumes/:name              detach (final flush), then delete
 *
 * Errors are `{"error": {"name", "kind", "message"}}` with an HTTP status per kind.
 * It listens on loopback in `cairn dev`; it has no authentication of its own.
 */
import express, { type Express, type Request, type Response } from 'express'
import { CairnError, InvalidArgumentError, errorKind, type ErrorKind } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { ControlPlane } from '../../control-plane/types.js'
import type { EngineHost } from './engine-host.js'

/** The HTTP status each error kind answers with; the CLI maps it back through `kind`. */
export const HTTP_STATUS_BY_KIND: Readonly<Record<ErrorKind, number>> = {
  'invalid-argument': 400,
  'out-of-range': 400,
  'permission-denied': 403,
  unauthenticated: 401,
  'not-found': 404,
  'already-exists': 409,
  aborted: 409,
  'failed-precondition': 412,
  'resource-exhausted': 429,
  'data-loss': 500,
  internal: 500,
  unavailable: 503,
}

export interface AdminApiComponents {
  host: EngineHost
  controlPlane: ControlPlane
  logger: Logger
}

/** Largest admin request body. */
const BODY_LIMIT = '16kb'

/** Adds the admin routes to `app` (pass as the health server's `routes`). */
export function mountAdminApi(app: Express, components: AdminApiComponents): void {
  const { host, controlPlane } = components
  const json = express.json({ limit: BODY_LIMIT, strict: true })
  const handle = (action: (req: Request) => Promise<unknown>, status = 200) => async (req: Request, res: Response) => {
    try {
      res.status(status).json(await action(req))
    } catch (err) {
      sendError(res, err, components.logger)
    }
  }
  app.get('/v1/volumes', handle(async () => {
    const page = await controlPlane.listVolumes({ limit: 1000 })
    return Promise.all(
      page.items.map(async (v) => ({ ...v, engine: (await host.ifAttached(v.name))?.status() ?? null })),
    )
  }))
  app.post('/v1/volumes/:name/checkpoint', handle(async (req) => {
    // A volume this engine does not hold has nothing unflushed here: its head is already current.
    const name = param(req, 'name')
    await (await host.ifAttached(name))?.checkpoint()
    return controlPlane.getVolume(name)
  }))
  app.post('/v1/volumes/:name/snapshots', json, handle((req) => host.snapshot(param(req, 'name'), bodyString(req, 'name')), 201))
  app.post('/v1/volumes/:name/clones', json, handle((req) => host.cloneVolume(param(req, 'name'), bodyString(req, 'name')), 201))
  app.post('/v1/volumes/:name/resize', json, handle((req) => host.resize(param(req, 'name'), bodyInteger(req, 'sizeBytes'))))
  app.delete('/v1/volumes/:name', handle(async (req) => {
    await host.deleteVolume(param(req, 'name'))
    return {}
  }))
  // Malformed JSON bodies reach here from express.json().
  app.use('/v1', (err: unknown, _req: Request, res: Response, next: (err?: unknown) => void) => {
    if (res.headersSent) return next(err)
    sendError(res, new InvalidArgumentError(`bad request body: ${(err as Error).message}`, { cause: err }), components.logger)
  })
}

function sendError(res: Response, err: unknown, logger: Logger): void {
  const kind = errorKind(err)
  const name = err instanceof Error ? err.name : 'Error'
  const message = err instanceof Error ? err.message : String(err)
  if (!(err instanceof CairnError)) logger.error({ err }, 'admin request failed')
  else logger.info({ err: { name, kind, message } }, 'admin request refused')
  res.status(HTTP_STATUS_BY_KIND[kind]).json({ error: { name, kind, message } })
}

function param(req: Request, key: string): string {
  return String(req.params[key])
}

function body(req: Request): Record<string, unknown> {
  const value: unknown = req.body
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidArgumentError('expected a JSON object body')
  return value as Record<string, unknown>
}

function bodyString(req: Request, key: string): string {
  const value = body(req)[key]
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(`body field ${key} must be a non-empty string`)
  return value
}

function bodyInteger(req: Request, key: string): number {
  const value = body(req)[key]
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new InvalidArgumentError(`body field ${key} must be an integer`)
  return value
}
