/**
 * Validation of JournalService requests at the edge: wire objects in, domain
 * objects out, or a JournalRequestError (INVALID_ARGUMENT) that names the field.
 */
import { CID } from 'multiformats/cid'
import type { CheckpointState } from './journal-files.js'
import type { StoredRecord } from './record.js'
import { JournalCutoffError, JournalRequestError } from './errors.js'
import type { WireCheckpoint, WireRecord } from './proto.js'

/**
 * Kubernetes uids are UUIDs; anything of letters, digits, '-' and '_' is accepted.
 * No dots or slashes: the uid names a directory, so it can never escape the journal root.
 */
const VOLUME_UID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/

export interface RecordLimits {
  /** Largest record payload accepted. */
  maxRecordBytes: number
  /** Most records in one Append message. */
  maxRecordsPerMessage: number
}

export function validateVolumeUid(uid: unknown): string {
  if (typeof uid !== 'string' || !VOLUME_UID.test(uid)) throw new JournalRequestError(`bad volume_uid ${JSON.stringify(uid)}`)
  return uid
}

/** Whether `name` could be a volume uid (a journal directory); other entries in the journal root are not journals. */
export function isVolumeUid(name: string): boolean {
  return VOLUME_UID.test(name)
}

/** Most live volume uids one Collect carries: 500k uids of ≤ 40 bytes stay well inside a node's message limit. */
export const COLLECT_LIVE_UIDS_MAX = 500_000

export interface CollectRequest {
  liveVolumeUids: ReadonlySet<string>
  olderThanUnixMs: number
  dryRun: boolean
}

/**
 * A Collect request, checked before any journal is touched.
 * @throws JournalRequestError (malformed, too many uids); JournalCutoffError (cutoff in this node's future)
 */
export function validateCollect(req: { liveVolumeUids?: unknown; olderThanUnixMs?: unknown; dryRun?: unknown }, nowUnixMs: number): CollectRequest {
  const uids = req.liveVolumeUids ?? []
  if (!Array.isArray(uids)) throw new JournalRequestError('live_volume_uids must be a list')
  if (uids.length > COLLECT_LIVE_UIDS_MAX) throw new JournalRequestError(`${uids.length} live volume uids; at most ${COLLECT_LIVE_UIDS_MAX} per Collect`)
  const live = new Set<string>()
  for (const uid of uids) live.add(validateVolumeUid(uid))
  const olderThanUnixMs = req.olderThanUnixMs
  if (typeof olderThanUnixMs !== 'number' || !Number.isSafeInteger(olderThanUnixMs) || olderThanUnixMs <= 0) {
    throw new JournalRequestError(`older_than_unix_ms must be a positive integer, got ${String(olderThanUnixMs)}`)
  }
  if (olderThanUnixMs > nowUnixMs) {
    throw new JournalCutoffError(`cutoff ${new Date(olderThanUnixMs).toISOString()} is after this node's clock (${new Date(nowUnixMs).toISOString()})`)
  }
  return { liveVolumeUids: live, olderThanUnixMs, dryRun: req.dryRun === true }
}

/** An epoch is a safe integer ≥ `min` (1 for every call but Drop of a never-attached volume). */
export function validateEpoch(epoch: unknown, min = 1): number {
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < min) throw new JournalRequestError(`bad epoch ${String(epoch)}`)
  return epoch
}

export function validateSeq(seq: unknown, field: string, min = 1): number {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < min) throw new JournalRequestError(`bad ${field} ${String(seq)}`)
  return seq
}

/** Records of one Append message: each well formed, no epoch above the stream's, seqs strictly increasing by one. */
export function validateRecords(records: readonly WireRecord[], streamEpoch: number, limits: RecordLimits): StoredRecord[] {
  if (records.length > limits.maxRecordsPerMessage) throw new JournalRequestError(`${records.length} records in one message; limit ${limits.maxRecordsPerMessage}`)
  return records.map((r, i) => {
    const seq = validateSeq(r.seq, `records[${i}].seq`)
    const epoch = validateEpoch(r.epoch)
    if (epoch > streamEpoch) throw new JournalRequestError(`records[${i}].epoch ${epoch} is above the request's epoch ${streamEpoch}`)
    if (!Number.isInteger(r.op) || r.op < 1 || r.op > 0xffffffff) throw new JournalRequestError(`bad records[${i}].op ${String(r.op)}`)
    if (!(r.payload instanceof Uint8Array)) throw new JournalRequestError(`records[${i}].payload is not bytes`)
    if (r.payload.length > limits.maxRecordBytes) throw new JournalRequestError(`records[${i}] is ${r.payload.length} bytes; limit ${limits.maxRecordBytes}`)
    const prev = records[i - 1]
    if (prev !== undefined && seq !== prev.seq + 1) throw new JournalRequestError(`records[${i}].seq ${seq} does not follow ${prev.seq}`)
    return { seq, epoch, op: r.op, payload: r.payload }
  })
}

export function validateCheckpoint(wire: WireCheckpoint | null | undefined): CheckpointState {
  if (wire == null) throw new JournalRequestError('missing checkpoint')
  const seq = validateSeq(wire.seq, 'checkpoint.seq', 0)
  const sizeBytes = validateSeq(wire.sizeBytes, 'checkpoint.size_bytes', 0)
  if (typeof wire.rootCid !== 'string' || wire.rootCid.length > 512) throw new JournalRequestError('bad checkpoint.root_cid')
  if (wire.rootCid === '') return { rootCid: null, sizeBytes, seq }
  try {
    CID.parse(wire.rootCid)
  } catch (err) {
    throw new JournalRequestError(`checkpoint.root_cid ${JSON.stringify(wire.rootCid)} is not a CID`, { cause: err })
  }
  return { rootCid: wire.rootCid, sizeBytes, seq }
}

export function checkpointToWire(cp: CheckpointState | null): WireCheckpoint | null {
  return cp === null ? null : { rootCid: cp.rootCid ?? '', sizeBytes: cp.sizeBytes, seq: cp.seq }
}

export function recordToWire(r: StoredRecord): WireRecord {
  return { seq: r.seq, epoch: r.epoch, op: r.op, payload: Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength) }
}
