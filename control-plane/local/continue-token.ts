/**
 * Continue tokens of the Local control plane: where the previous page ended, for
 * which list, and when it was issued.
 *
 * Local pages by key (names after the last one returned), so any token would stay
 * usable forever. It expires anyway, after the same five minutes as etcd's default
 * compaction, so that callers written against Local meet StaleContinueTokenError
 * exactly where they would meet 410 Expired on Kubernetes, and restart their list.
 */
import { InvalidArgumentError } from '../../core/errors.js'
import { StaleContinueTokenError, type ResourceKind } from '../types.js'

const TOKEN_VERSION = 1
const TOKEN_LENGTH_MAX = 2048

/** What a token encodes. `filter` is the list's filter (e.g. a volume name), or null. */
export interface ContinuePosition {
  kind: ResourceKind
  filter: string | null
  /** The last name returned; the next page starts after it. */
  after: string
}

export function encodeContinueToken(position: ContinuePosition, issuedAtMs: number): string {
  const payload = { v: TOKEN_VERSION, k: position.kind, f: position.filter, a: position.after, t: issuedAtMs }
  return Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url')
}

/**
 * Reads a token for the list (`kind`, `filter`).
 * @throws InvalidArgumentError if it is not a token of this list.
 * @throws StaleContinueTokenError if it is older than `ttlMs`.
 */
export function decodeContinueToken(
  token: unknown,
  expected: { kind: ResourceKind; filter: string | null },
  nowMs: number,
  ttlMs: number,
): string {
  const payload = parse(token)
  if (payload.k !== expected.kind || payload.f !== expected.filter) {
    throw new InvalidArgumentError('continue: token belongs to a different list')
  }
  if (nowMs - payload.t > ttlMs) {
    throw new StaleContinueTokenError(`continue token expired ${nowMs - payload.t - ttlMs} ms ago; restart the list`)
  }
  return payload.a
}

interface Payload {
  v: number
  k: string
  f: string | null
  a: string
  t: number
}

function parse(token: unknown): Payload {
  const malformed = (cause?: unknown) => new InvalidArgumentError('continue: malformed token', { cause })
  if (typeof token !== 'string' || token.length === 0 || token.length > TOKEN_LENGTH_MAX) throw malformed()
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw malformed()
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
  } catch (err) {
    throw malformed(err)
  }
  const p = raw as Partial<Payload> | null
  const ok =
    typeof p === 'object' &&
    p !== null &&
    p.v === TOKEN_VERSION &&
    typeof p.k === 'string' &&
    (p.f === null || typeof p.f === 'string') &&
    typeof p.a === 'string' &&
    p.a.length > 0 &&
    Number.isSafeInteger(p.t)
  if (!ok) throw malformed()
  return p as Payload
}
