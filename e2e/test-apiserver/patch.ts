/**
 * TEST INFRASTRUCTURE: the patch formats kube-apiserver accepts.
 * - JSON merge patch (RFC 7386): objects merge, `null` deletes, arrays replace.
 * - JSON patch (RFC 6902): add, remove, replace, move, copy, test.
 * - Strategic merge patch: kubectl sends it for built-in kinds. Real servers use
 *   per-field merge keys from Go struct tags; this server treats it as a merge
 *   patch with the `$`-directives dropped, which is what CRs get anyway.
 */
import { isDeepStrictEqual } from 'node:util'
import { ApiError, badRequest } from './errors.js'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Applies an RFC 7386 merge patch; returns a new value. */
export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch)
  const result: JsonObject = isObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else result[key] = mergePatch(result[key], value)
  }
  return result
}

/** A strategic merge patch as a merge patch: drops `$patch`, `$setElementOrder/...`, `$retainKeys`, ... */
export function strategicAsMergePatch(patch: Json): Json {
  if (Array.isArray(patch)) return patch.map(strategicAsMergePatch)
  if (!isObject(patch)) return patch
  const out: JsonObject = {}
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) continue
    out[key] = strategicAsMergePatch(value)
  }
  return out
}

interface PatchOp {
  op: string
  path: string
  from?: string
  value?: Json
}

/** Splits an RFC 6901 pointer into unescaped tokens. */
function pointerTokens(pointer: string): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) throw badRequest(`invalid JSON pointer: "${pointer}"`)
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function patchFailed(message: string): ApiError {
  // kube-apiserver answers a JSON patch that cannot apply with 422 Invalid... for
  // `test` and 500 for bad paths in old versions; current versions say 422.
  return new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: ${message}`)
}

function arrayIndex(token: string, length: number, forAdd: boolean): number {
  if (forAdd && token === '-') return length
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw patchFailed(`invalid array index "${token}"`)
  const index = Number(token)
  if (index > length || (!forAdd && index === length)) throw patchFailed(`array index ${index} out of bounds`)
  return index
}

/** Resolves the parent container of `tokens` within `doc`. */
function parentOf(doc: Json, tokens: string[], path: string): { parent: Json; last: string } {
  let node: Json | undefined = doc
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(node)) node = node[arrayIndex(token, node.length, false)]
    else if (isObject(node)) node = node[token]
    else node = undefined
    if (node === undefined) throw patchFailed(`doc is missing path: "${path}"`)
  }
  return { parent: node, last: tokens[tokens.length - 1] ?? '' }
}

function getAt(doc: Json, path: string): Json {
  const tokens = pointerTokens(path)
  if (tokens.length === 0) return doc
  const { parent, last } = parentOf(doc, tokens, path)
  const value = Array.isArray(parent) ? parent[arrayIndex(last, parent.length, false)] : isObject(parent) ? parent[last] : undefined
  if (value === undefined) throw patchFailed(`doc is missing path: "${path}"`)
  return value
}

function removeAt(doc: Json, path: string): Json {
  const tokens = pointerTokens(path)
  if (tokens.length === 0) throw patchFailed('cannot remove the whole document')
  const { parent, last } = parentOf(doc, tokens, path)
  if (Array.isArray(parent)) return parent.splice(arrayIndex(last, parent.length, false), 1)[0] as Json
  if (!isObject(parent) || !(last in parent)) throw patchFailed(`unable to remove nonexistent key: ${last}`)
  const value = parent[last] as Json
  delete parent[last]
  return value
}

/** Returns the new document (the root may be replaced). */
function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const tokens = pointerTokens(path)
  if (tokens.length === 0) return value
  const { parent, last } = parentOf(doc, tokens, path)
  if (Array.isArray(parent)) {
    const index = arrayIndex(last, parent.length, !replace)
    parent.splice(index, replace ? 1 : 0, value)
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) throw patchFailed(`doc is missing key: ${path}`)
    parent[last] = value
  } else {
    throw patchFailed(`doc is missing path: "${path}"`)
  }
  return doc
}

function applyOp(doc: Json, op: PatchOp): Json {
  switch (op.op) {
    case 'add':
      return addAt(doc, op.path, structuredClone(op.value ?? null), false)
    case 'replace':
      return addAt(doc, op.path, structuredClone(op.value ?? null), true)
    case 'remove':
      removeAt(doc, op.path)
      return doc
    case 'move': {
      const value = removeAt(doc, op.from ?? '')
      return addAt(doc, op.path, value, false)
    }
    case 'copy':
      return addAt(doc, op.path, structuredClone(getAt(doc, op.from ?? '')), false)
    case 'test':
      if (!isDeepStrictEqual(getAt(doc, op.path), op.value)) throw patchFailed(`testing value ${op.path} failed`)
      return doc
    default:
      throw badRequest(`unexpected kind: ${op.op}`)
  }
}

/** Applies an RFC 6902 JSON patch to a copy of `target`. */
export function jsonPatch(target: Json, patch: Json): Json {
  if (!Array.isArray(patch)) throw badRequest('json patch must be an array of operations')
  let doc = structuredClone(target)
  for (const raw of patch) {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw badRequest('json patch operation needs string "op" and "path"')
    }
    if ('value' in raw === false && ['add', 'replace', 'test'].includes(raw.op)) {
      throw badRequest(`json patch ${raw.op} operation does not have a value`)
    }
    doc = applyOp(doc, raw as unknown as PatchOp)
  }
  return doc
}
