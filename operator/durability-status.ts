/**
 * BlockStore `status.repair` and `status.scrub`: the storage nodes' Stats
 * counters summed over the block store. Counters are per node and reset when a
 * node restarts, so the sums say "since the nodes started"; the backlog is the
 * live figure Volume health is judged by.
 */
import type { BlockStoreRepairStatus, BlockStoreScrubStatus, BlockStoreStatus } from './types.js'
import type { UsageReport } from './usage-poller.js'

/**
 * The time every reporting node had completed a pass by: the oldest of their
 * last completions, absent while any of them has not completed one (a cluster
 * that has not scrubbed everything must not claim a scrub time).
 */
function slowestPass(completedUnixMs: readonly number[]): string | undefined {
  if (completedUnixMs.length === 0 || completedUnixMs.some((ms) => !(ms > 0))) return undefined
  return new Date(Math.min(...completedUnixMs)).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function withTime<T extends object>(fields: T, lastPassTime: string | undefined): T & { lastPassTime?: string } {
  return lastPassTime === undefined ? fields : { ...fields, lastPassTime }
}

/**
 * Repair and scrub status from the latest reports. Nodes that run no repairer
 * (or scrubber) do not count; with no such node at all, the stored figures
 * stand, so an operator restart (which forgets reports) does not blank them.
 */
export function durabilityStatus(reports: ReadonlyMap<string, UsageReport>, old: BlockStoreStatus): Pick<BlockStoreStatus, 'repair' | 'scrub'> {
  const repairs = [...reports.values()].flatMap((r) => (r.repair === undefined ? [] : [r.repair]))
  const scrubs = [...reports.values()].flatMap((r) => (r.scrub === undefined ? [] : [r.scrub]))
  const out: Pick<BlockStoreStatus, 'repair' | 'scrub'> = {}
  if (repairs.length > 0) {
    const sum = (pick: (r: (typeof repairs)[number]) => number): number => repairs.reduce((total, r) => total + pick(r), 0)
    const repair: BlockStoreRepairStatus = {
      backlogShards: sum((r) => r.backlogShards),
      repairedShards: sum((r) => r.repairedShards),
      movedShards: sum((r) => r.movedShards),
      movedBytes: sum((r) => r.movedBytes),
    }
    out.repair = withTime(repair, slowestPass(repairs.map((r) => r.lastPassCompletedUnixMs)))
  } else if (old.repair !== undefined) out.repair = old.repair
  if (scrubs.length > 0) {
    const scrub: BlockStoreScrubStatus = {
      scrubbedShards: scrubs.reduce((total, s) => total + s.scrubbedShards, 0),
      badShards: scrubs.reduce((total, s) => total + s.badShards, 0),
    }
    out.scrub = withTime(scrub, slowestPass(scrubs.map((s) => s.lastPassCompletedUnixMs)))
  } else if (old.scrub !== undefined) out.scrub = old.scrub
  return out
}
