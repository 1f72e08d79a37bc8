/**
 * Continue tokens of the Kubernetes ControlPlane: the API server's own token,
 * wrapped with the list it belongs to (kind and filter). The API server would
 * happily continue a token against another list; the ControlPlane contract says a
 * token only works for the list that issued it, so the wrapper is checked first.
 */
import { InvalidArgumentError } from '../../core/errors.js'
import type { ResourceKind } from '../types.js'

const TOKEN_VERSION = 1
const TOKEN_LENGTH_MAX = 8192
const BASE64URL = /^[A-Za-z0-9_-]+$/

/** Which list a token continues: the kind and its filter (a volume name), or null. */
export interface ListIdentity {
  kind: ResourceKind
  filter: string | null
}

export function encodeContinueToken(list: ListIdentity, serverToken: string): string {
  const payload = { v: TOKEN_VERSION, k: list.kind, f: list.filter, c: serverToken }
  return Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url')
}

/**
 * The API server's token inside `token`.
 * @throws InvalidArgumentError if `token` is not a token of the list `expected`.
 */
export function decodeContinueToken(token: string, expected: ListIdentity): string {
  if (typeof token !== 'string' || token.length > TOKEN_LENGTH_MAX || !BASE64URL.test(token)) {
    throw new InvalidArgumentError('continue: not a continue token')
  }
  let payload: unknown
  try {
    payload = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
  } catch (err) {
    throw new InvalidArgumentError('continue: not a continue token', { cause: err })
  }
  const p = payload as { v?: unknown; k?: unknown; f?: unknown; c?: unknown }
  if (typeof p !== 'object' || p === null || p.v !== TOKEN_VERSION || typeof p.c !== 'string' || p.c === '') {
    throw new InvalidArgumentError('continue: not a continue token')
  }
  if (p.k !== expected.kind || p.f !== expected.filter) {
    throw new InvalidArgumentError('continue: token belongs to a different list')
  }
  return p.c
}
