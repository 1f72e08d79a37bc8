import type { Registry } from 'prom-client'
import { counterOn, gaugeOn } from '../scrub/metrics-util.js'

/** Why a shard's repair or move did not happen this pass (it is retried next pass). */
export type RepairFailureReason =
  | 'target-down'
  | 'unsettled'
  | 'peer-unavailable'
  | 'put-failed'
  | 'read-failed'
  | 'insufficient-shards'
  | 'verify-failed'
  | 'no-header'
  | 'unplaceable'

export const REPAIR_FAILURE_REASONS: readonly RepairFailureReason[] = [
  'target-down',
  'unsettled',
  'peer-unavailable',
  'put-failed',
  'read-failed',
  'insufficient-shards',
  'verify-failed',
  'no-header',
  'unplaceable',
]

export function repairMetrics(registry: Registry) {
  return {
    shards: counterOn<'action'>(registry, 'cairn_repair_shards_total', 'Shards rebuilt (action=rebuilt) or moved to their placement (action=moved).', ['action']),
    bytes: counterOn<'action'>(registry, 'cairn_repair_bytes_total', 'Shard bytes written by repair (rebuilt), moved by rebalance (moved) or fetched from peers to rebuild (fetched).', ['action']),
    deleted: counterOn(registry, 'cairn_repair_deleted_shards_total', 'Misplaced local copies deleted after their target confirmed a healthy copy.'),
    failures: counterOn<'reason'>(registry, 'cairn_repair_failures_total', 'Shards whose repair or move was skipped or failed this pass, by reason; retried next pass.', ['reason']),
    backlog: gaugeOn(registry, 'cairn_repair_backlog_shards', 'Shards known to need a rebuild or a move that this node has not done yet.'),
    chunks: counterOn(registry, 'cairn_repair_chunks_examined_total', 'Chunks whose placement this node reconciled.'),
    lastPass: gaugeOn(registry, 'cairn_repair_last_pass_completed_timestamp_seconds', 'Unix time the last full repair pass completed.'),
  }
}

export type RepairMetrics = ReturnType<typeof repairMetrics>
