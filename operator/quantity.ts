/**
 * Kubernetes resource quantities (`resource.Quantity`): `128974848`, `129e6`,
 * `129M`, `123Mi`, `1.5Gi`, `100m`. Node capacity and allocatable come as
 * quantities, so eligibility depends on reading them exactly as the API server
 * writes them.
 */
import { CairnError } from '../core/errors.js'

/** A string is not a Kubernetes quantity. */
export class InvalidQuantityError extends CairnError {
  override readonly name = 'InvalidQuantityError'
  readonly kind = 'invalid-argument'
}

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 }
const DECIMAL: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 }
const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/

/**
 * The value of a quantity, rounded up to an integer as Kubernetes' `Value()`
 * does (a `100m` byte count is one byte, never zero).
 * @throws InvalidQuantityError for anything that is not a quantity
 */
export function parseQuantity(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text)) throw new InvalidQuantityError(`not a finite quantity: ${text}`)
    return Math.ceil(text)
  }
  const match = QUANTITY.exec(text.trim())
  if (match === null || text.trim() === '') throw new InvalidQuantityError(`not a Kubernetes quantity: ${JSON.stringify(text)}`)
  const number = Number(match[1])
  const suffix = match[2] ?? ''
  let scale: number
  if (suffix in BINARY) scale = BINARY[suffix] as number
  else if (suffix in DECIMAL) scale = DECIMAL[suffix] as number
  else scale = 10 ** Number(suffix.slice(1))
  const value = number * scale
  if (!Number.isFinite(value)) throw new InvalidQuantityError(`quantity out of range: ${JSON.stringify(text)}`)
  // Decimal scales below 1 are not exact in binary floating point (1500m * 1e-3
  // = 1.5000000000000002); round to nanounits before taking the ceiling.
  return Math.ceil(Math.round(value * 1e9) / 1e9)
}

/** Like {@link parseQuantity}, but undefined for a missing or malformed value (a node field the operator cannot use). */
export function tryParseQuantity(text: string | number | undefined): number | undefined {
  if (text === undefined) return undefined
  try {
    return parseQuantity(text)
  } catch {
    return undefined
  }
}
