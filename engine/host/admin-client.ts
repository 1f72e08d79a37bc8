/**
 * The CLI's side of the engine admin API (admin-api.ts): typed results, typed errors.
 */
import type { ErrorKind } from '../../core/errors.js'
import type { Snapshot, Volume } from '../../control-plane/types.js'
import { AdminApiError, EngineUnreachableError } from './types.js'

export interface AdminClientInit {
  /** `host:port` of the engine's health/admin server. */
  address: string
  /** Per-request deadline; a snapshot waits for a checkpoint. @default 120000 */
  timeoutMs?: number
  /** Sent as `authorization: Bearer …` (a CSI node plugin's admin API in a cluster requires the cluster token). @default none */
  token?: string
}

/** A volume as the engine reports it: the control-plane object plus the engine's view, null when not attached here. */
export type EngineVolume = Volume & { engine: Record<string, unknown> | null }

export class AdminClient {
  private readonly baseUrl: string
  private readonly timeoutMs: number
  private readonly token: string | undefined

  constructor(init: AdminClientInit) {
    this.baseUrl = `http://${init.address}`
    this.timeoutMs = init.timeoutMs ?? 120_000
    this.token = init.token
  }

  listVolumes(): Promise<EngineVolume[]> {
    return this.request('GET', '/v1/volumes')
  }

  checkpoint(volume: string): Promise<Volume> {
    return this.request('POST', `/v1/volumes/${encodeURIComponent(volume)}/checkpoint`)
  }

  snapshot(volume: string, name: string): Promise<Snapshot> {
    return this.request('POST', `/v1/volumes/${encodeURIComponent(volume)}/snapshots`, { name })
  }

  clone(source: string, name: string): Promise<Volume> {
    return this.request('POST', `/v1/volumes/${encodeURIComponent(source)}/clones`, { name })
  }

  resize(volume: string, sizeBytes: number): Promise<Volume> {
    return this.request('POST', `/v1/volumes/${encodeURIComponent(volume)}/resize`, { sizeBytes })
  }

  deleteVolume(volume: string): Promise<void> {
    return this.request('DELETE', `/v1/volumes/${encodeURIComponent(volume)}`)
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      })
    } catch (err) {
      throw new EngineUnreachableError(`engine admin API at ${this.baseUrl} is not reachable: ${(err as Error).message}`, { cause: err })
    }
    const payload = (await res.json().catch(() => undefined)) as { error?: { name: string; kind: ErrorKind; message: string } } | undefined
    if (res.ok) return payload as T
    const e = payload?.error
    if (e === undefined) throw new AdminApiError('internal', 'HttpError', `engine admin API answered ${res.status} without an error body`)
    throw new AdminApiError(e.kind, e.name, e.message)
  }
}
