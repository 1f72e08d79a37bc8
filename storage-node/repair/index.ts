/** Repair and rebalance: reconcile this node's shards with their placement (docs/adr/0020). */
export { Repairer, type RepairerInit, type RepairerComponents, type RepairPassReport } from './repairer.js'
export { planChunk, type ChunkPlan, type LocalCopy, type PlanInput, type RemoteSlot } from './plan.js'
export { REPAIR_FAILURE_REASONS, type RepairFailureReason } from './metrics.js'
