/**
 * TEST INFRASTRUCTURE: server-side printing. kubectl asks for
 * `application/json;as=Table;g=meta.k8s.io;v=v1` and prints the columns it gets,
 * which is how a CRD's additionalPrinterColumns reach `kubectl get`.
 */
import type { Json, JsonObject } from './patch.js'
import { isObject } from './patch.js'
import type { PrinterColumn, ResourceType } from './resources.js'

/** True when the Accept header asks for a meta.k8s.io Table. */
export function wantsTable(accept: string | undefined): boolean {
  return accept !== undefined && /as=Table/.test(accept)
}

type Step = { field: string } | { index: number } | { all: true } | { filter: { path: string[]; value: string } }

/** Parses the JSONPath subset CRDs use: `.a.b`, `[0]`, `[*]`, `[?(@.type=="Ready")]`. */
function parsePath(path: string): Step[] {
  const steps: Step[] = []
  const re = /\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\*\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]/g
  let m: RegExpExecArray | null
  while ((m = re.exec(path)) !== null) {
    if (m[1] !== undefined) steps.push({ field: m[1] })
    else if (m[2] !== undefined) steps.push({ index: Number(m[2]) })
    else if (m[3] !== undefined) steps.push({ filter: { path: m[3].split('.'), value: m[4] ?? '' } })
    else steps.push({ all: true })
  }
  return steps
}

function dig(value: Json | undefined, path: string[]): Json | undefined {
  let node = value
  for (const key of path) node = isObject(node) ? node[key] : undefined
  return node
}

/** Evaluates a printer-column JSONPath; the first match, as the apiserver prints. */
export function jsonPath(obj: Json, path: string): Json | undefined {
  let nodes: Json[] = [obj]
  for (const step of parsePath(path)) {
    const next: Json[] = []
    for (const node of nodes) {
      if ('field' in step) {
        const v = isObject(node) ? node[step.field] : undefined
        if (v !== undefined) next.push(v)
      } else if ('index' in step) {
        const v = Array.isArray(node) ? node[step.index] : undefined
        if (v !== undefined) next.push(v)
      } else if ('all' in step) {
        if (Array.isArray(node)) next.push(...node)
      } else if (Array.isArray(node)) {
        next.push(...node.filter((item) => String(dig(item, step.filter.path)) === step.filter.value))
      }
    }
    nodes = next
  }
  return nodes[0]
}

/** "5m", "3h", "2d": the apiserver's human-readable age. */
export function humanAge(timestamp: string, nowMs = Date.now()): string {
  const seconds = Math.max(0, Math.floor((nowMs - Date.parse(timestamp)) / 1000))
  if (Number.isNaN(seconds)) return '<unknown>'
  if (seconds < 120) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 10) return `${minutes}m${seconds % 60 === 0 ? '' : `${seconds % 60}s`}`
  if (minutes < 180) return `${minutes}m`
  const hours = Math.floor(minutes / 60)
  if (hours < 48) return `${hours}h`
  return `${Math.floor(hours / 24)}d`
}

function cell(column: PrinterColumn, obj: JsonObject): Json {
  const value = jsonPath(obj, column.jsonPath)
  if (value === undefined) return null
  if (column.type === 'date' && typeof value === 'string') return humanAge(value)
  if (isObject(value) || Array.isArray(value)) return JSON.stringify(value)
  return value
}

function definitions(rt: ResourceType): Json[] {
  const name = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 }
  return [name, ...rt.printerColumns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? '', description: c.description ?? '', priority: c.priority ?? 0 }))]
}

/** A Table of `objects`; each row's object is its PartialObjectMetadata, as kubectl requests by default. */
export function toTable(rt: ResourceType, objects: JsonObject[], listMeta: JsonObject = {}): JsonObject {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: listMeta,
    columnDefinitions: definitions(rt),
    rows: objects.map((obj) => ({
      cells: [(obj.metadata as JsonObject).name ?? null, ...rt.printerColumns.map((c) => cell(c, obj))],
      object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata ?? {} },
    })),
  }
}
