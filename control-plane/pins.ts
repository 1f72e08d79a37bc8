/**
 * Validation shared by both control planes' pins: a pin names a CIDv1 that
 * garbage collection understands (a raw data chunk or a dag-cbor manifest page)
 * in its canonical string form, so the same CID written two ways is one pin.
 */
import { CID } from 'multiformats/cid'
import { InvalidArgumentError } from '../core/errors.js'
import { RAW_CODEC } from '../core/cid.js'
import type { Pin } from './types.js'

/** dag-cbor, the codec of manifest pages. */
const DAG_CBOR_CODEC = 0x71
/** Longest CID string accepted (the CRD's maxLength). */
export const PIN_CID_CHARS_MAX = 128
/** Longest note accepted (the CRD's maxLength). */
export const PIN_NOTE_CHARS_MAX = 256

/** The canonical string of a pinnable CID, or InvalidArgumentError. */
export function canonicalPinCid(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > PIN_CID_CHARS_MAX) {
    throw new InvalidArgumentError(`cid: must be a CID string of 1 to ${PIN_CID_CHARS_MAX} characters`)
  }
  let cid: CID
  try {
    cid = CID.parse(value)
  } catch (err) {
    throw new InvalidArgumentError(`cid: ${JSON.stringify(value)} is not a CID`, { cause: err })
  }
  if (cid.version !== 1 || (cid.code !== RAW_CODEC && cid.code !== DAG_CBOR_CODEC)) {
    throw new InvalidArgumentError(`cid: ${JSON.stringify(value)} must be a CIDv1 with codec raw or dag-cbor`)
  }
  return cid.toString()
}

/** A validated pin with its CID in canonical form. */
export function validatePin(pin: unknown): Pin {
  if (typeof pin !== 'object' || pin === null) throw new InvalidArgumentError('pin: must be {cid, note?}')
  const { cid, note } = pin as Record<string, unknown>
  const canonical = canonicalPinCid(cid)
  if (note === undefined) return { cid: canonical }
  if (typeof note !== 'string' || note.length > PIN_NOTE_CHARS_MAX) throw new InvalidArgumentError(`note: must be a string of at most ${PIN_NOTE_CHARS_MAX} characters`)
  return { cid: canonical, note }
}

/** The pin list after adding `pin`: one entry per CID, ordered by CID; a given note replaces the old one. */
export function withPin(pins: readonly Pin[], pin: Pin): { pins: Pin[]; stored: Pin; changed: boolean } {
  const existing = pins.find((p) => p.cid === pin.cid)
  if (existing !== undefined && (pin.note === undefined || pin.note === existing.note)) return { pins: [...pins], stored: existing, changed: false }
  const stored: Pin = pin.note === undefined ? { cid: pin.cid } : { cid: pin.cid, note: pin.note }
  const next = pins.filter((p) => p.cid !== pin.cid)
  next.push(stored)
  next.sort((a, b) => (a.cid < b.cid ? -1 : a.cid > b.cid ? 1 : 0))
  return { pins: next, stored, changed: true }
}
