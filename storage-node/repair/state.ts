/** The repairer's persisted state: cursor, the running pass's counters, lifetime totals. */
import type { RepairStats } from '../shard-store.js'
import { hasCounters } from '../scrub/state-file.js'
import { REPAIR_FAILURE_REASONS, type RepairFailureReason } from './metrics.js'

export interface PassCounters {
  chunksExamined: number
  movedShards: number
  movedBytes: number
  repairedShards: number
  repairedBytes: number
  /** Shard bytes fetched from peers to rebuild. */
  fetchedBytes: number
  /** Misplaced local copies deleted after their target confirmed (moves included). */
  deletedShards: number
  /** Work put off to the next pass (target down, shard too fresh). */
  deferredShards: number
  /** Work that failed (put refused, too few shards, verification). */
  failedShards: number
}

export interface RepairState {
  version: 1
  /** Where the running pass continues; null between passes. */
  cursor: { cidHex: string; resumeToken: string | null } | null
  pass: PassCounters & { failures: Partial<Record<RepairFailureReason, number>> }
  totals: RepairStats
}

const PASS_KEYS = ['chunksExamined', 'movedShards', 'movedBytes', 'repairedShards', 'repairedBytes', 'fetchedBytes', 'deletedShards', 'deferredShards', 'failedShards'] as const
const TOTAL_KEYS = ['backlogShards', 'repairedShards', 'repairedBytes', 'movedShards', 'movedBytes', 'passesCompleted', 'lastPassCompletedUnixMs'] as const

export function emptyPassCounters(): RepairState['pass'] {
  return { chunksExamined: 0, movedShards: 0, movedBytes: 0, repairedShards: 0, repairedBytes: 0, fetchedBytes: 0, deletedShards: 0, deferredShards: 0, failedShards: 0, failures: {} }
}

export function freshRepairState(): RepairState {
  return {
    version: 1,
    cursor: null,
    pass: emptyPassCounters(),
    totals: { backlogShards: 0, repairedShards: 0, repairedBytes: 0, movedShards: 0, movedBytes: 0, passesCompleted: 0, lastPassCompletedUnixMs: 0 },
  }
}

/** The state if `value` is a well-formed version 1 state, else undefined. */
export function checkRepairState(value: unknown): RepairState | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { version, cursor, pass, totals } = value as Record<string, unknown>
  if (version !== 1 || !checkCursor(cursor)) return undefined
  if (!hasCounters(pass, PASS_KEYS) || !hasCounters(totals, TOTAL_KEYS)) return undefined
  const rawFailures = (pass as Record<string, unknown>).failures
  if (typeof rawFailures !== 'object' || rawFailures === null) return undefined
  const failures: Partial<Record<RepairFailureReason, number>> = {}
  for (const reason of REPAIR_FAILURE_REASONS) {
    const n = (rawFailures as Record<string, unknown>)[reason]
    if (n === undefined) continue
    if (typeof n !== 'number' || !(n >= 0)) return undefined
    failures[reason] = n
  }
  return {
    version: 1,
    cursor,
    pass: { ...(Object.fromEntries(PASS_KEYS.map((k) => [k, pass[k]])) as unknown as PassCounters), failures },
    totals: Object.fromEntries(TOTAL_KEYS.map((k) => [k, totals[k]])) as unknown as RepairStats,
  }
}

function checkCursor(cursor: unknown): cursor is RepairState['cursor'] {
  if (cursor === null) return true
  if (typeof cursor !== 'object') return false
  const { cidHex, resumeToken } = cursor as Record<string, unknown>
  return typeof cidHex === 'string' && /^(?:[0-9a-f]{2})+$/.test(cidHex) && (resumeToken === null || typeof resumeToken === 'string')
}
