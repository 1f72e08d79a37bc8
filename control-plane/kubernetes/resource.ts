/**
 * The shape of a cairn.dev custom resource as it crosses the API, and the checks
 * that turn the untyped JSON client-node hands back into it. Only the fields the
 * ControlPlane relies on are typed; everything else (conditions, fields the operator
 * owns, fields of newer versions) is kept as it came, so a write never drops it.
 */
import type { ResourceKind } from '../types.js'
import { API_VERSION } from './constants.js'
import { MalformedObjectError } from './errors.js'

export type JsonRecord = Record<string, unknown>

export interface ResourceMeta extends JsonRecord {
  name: string
  uid: string
  resourceVersion: string
  creationTimestamp: string
  deletionTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  finalizers?: string[]
}

/** A stored custom resource: metadata checked, spec and status still untyped. */
export interface CustomResource extends JsonRecord {
  apiVersion: string
  kind: string
  metadata: ResourceMeta
  spec?: JsonRecord
  status?: JsonRecord
}

/** A custom resource to create: the server fills uid, resourceVersion and timestamps. */
export interface NewCustomResource {
  apiVersion: string
  kind: ResourceKind
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; finalizers: string[] }
  spec: JsonRecord
}

export function isRecord(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Checks what the API server returned for an object of `kind`. */
export function asResource(kind: ResourceKind, raw: unknown): CustomResource {
  const name = isRecord(raw) && isRecord(raw.metadata) && typeof raw.metadata.name === 'string' ? raw.metadata.name : '?'
  const bad = (detail: string): never => {
    throw new MalformedObjectError(kind, name, detail)
  }
  if (!isRecord(raw) || !isRecord(raw.metadata)) return bad('not an object with metadata')
  if (raw.kind !== kind || raw.apiVersion !== API_VERSION) return bad(`unexpected ${String(raw.apiVersion)} ${String(raw.kind)}`)
  const meta = raw.metadata
  for (const field of ['name', 'uid', 'resourceVersion', 'creationTimestamp'] as const) {
    if (typeof meta[field] !== 'string' || meta[field] === '') bad(`metadata.${field} missing`)
  }
  if (raw.spec !== undefined && !isRecord(raw.spec)) bad('spec is not an object')
  if (raw.status !== undefined && !isRecord(raw.status)) bad('status is not an object')
  return raw as CustomResource
}

/** Objects being deleted (waiting on finalizers) are gone as far as ControlPlane callers are concerned. */
export function isTerminating(cr: CustomResource): boolean {
  return typeof cr.metadata.deletionTimestamp === 'string'
}
