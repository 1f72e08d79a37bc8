/**
 * What one node does for one chunk, as a pure function of what it knows: the
 * chunk's placement under the current map, its own copies, and which targets
 * answered that they hold their shard. Kept free of I/O so the rules (who
 * rebuilds, when a copy may be deleted) are tested exhaustively on their own.
 */

/** One local copy of a shard of the chunk. */
export interface LocalCopy {
  index: number
  corrupt: boolean
  sizeBytes: number
  lastPutUnixMs: number
}

/** What this node learnt about a slot held by another member. */
export type RemoteSlot = 'healthy' | 'missing' | 'unknown'

export interface PlanInput {
  selfId: string
  /** Member id of slot i (shard i's target) under the current map: k+m entries. */
  targets: readonly string[]
  /** This node's copies of the chunk's shards, by index. */
  local: ReadonlyMap<number, LocalCopy>
  /** The answer for a slot whose target is another member: `unknown` when it is down or did not answer. */
  remote: (slot: number) => RemoteSlot
  /** Copies put at or after this time are left alone this pass (writes and map changes in flight). */
  settledBeforeUnixMs: number
  /**
   * Whether a live member outside the placement confirmed a healthy copy of the
   * slot (where an earlier epoch placed it): its holder moves it, so a rebuild
   * would only repeat the work at k times the traffic. @default none known
   */
  elsewhere?: (slot: number) => boolean
  /**
   * False when this node holds a slot above m: if it were the lowest healthy
   * slot, more than m slots would be lost and fewer than k shards left, so it
   * can never be responsible and asks nobody about the chunk's other slots.
   * @default true
   */
  mayRebuild?: boolean
}

export interface ChunkPlan {
  /** Local healthy copies whose target lacks them: push, then delete here once the target confirmed. */
  moves: { index: number; target: string }[]
  /** Local copies (healthy or corrupt) whose target confirmed a healthy copy: delete here. */
  deletes: number[]
  /** Shards this node is responsible for rebuilding, with their targets (itself included). */
  rebuilds: { index: number; target: string }[]
  /** Shards needing work this node would do but cannot this pass (target down, copy too fresh), by reason. */
  deferred: { index: number; reason: 'target-down' | 'unsettled' }[]
  /** The slot whose holder is responsible for rebuilds; undefined when no slot is known healthy. */
  responsibleSlot: number | undefined
}

/**
 * The rules (docs/adr/0020):
 * - a slot is healthy when its target holds a verified copy: this node's own
 *   uncorrupted copy for its own slot, a `has` answer for the others;
 * - the holder of the lowest healthy slot rebuilds every missing slot, so two
 *   nodes that see the same answers never rebuild the same shard;
 * - a misplaced local copy is deleted only once its target confirmed a healthy
 *   copy, and pushed first when the target lacks it.
 */
export function planChunk(input: PlanInput): ChunkPlan {
  const { selfId, targets, local } = input
  const plan: ChunkPlan = { moves: [], deletes: [], rebuilds: [], deferred: [], responsibleSlot: undefined }
  const status = targets.map((target, slot): RemoteSlot => {
    if (target !== selfId) return input.remote(slot)
    const copy = local.get(slot)
    return copy !== undefined && !copy.corrupt ? 'healthy' : 'missing'
  })
  for (const copy of local.values()) {
    const target = targets[copy.index]
    if (target === undefined || target === selfId) continue
    planMisplaced(plan, copy, target, status[copy.index] as RemoteSlot, input.settledBeforeUnixMs)
  }
  if (input.mayRebuild === false) return plan
  const responsible = status.indexOf('healthy')
  if (responsible < 0 || targets[responsible] !== selfId) return plan
  plan.responsibleSlot = responsible
  // A trigger copy written moments ago may belong to a write still in flight: its other shards may be on their way.
  const own = local.get(responsible) as LocalCopy
  status.forEach((s, slot) => {
    if (s === 'healthy') return
    if (s === 'missing' && movingIn(input, slot)) return
    if (s === 'unknown') plan.deferred.push({ index: slot, reason: 'target-down' })
    else if (own.lastPutUnixMs >= input.settledBeforeUnixMs) plan.deferred.push({ index: slot, reason: 'unsettled' })
    else plan.rebuilds.push({ index: slot, target: targets[slot] as string })
  })
  return plan
}

/** A healthy copy of the slot exists off its placement (here or on a live member): its holder will move it. */
function movingIn(input: PlanInput, slot: number): boolean {
  const own = input.local.get(slot)
  if (own !== undefined && !own.corrupt && input.targets[slot] !== input.selfId && own.lastPutUnixMs < input.settledBeforeUnixMs) return true
  return input.elsewhere?.(slot) === true
}

function planMisplaced(plan: ChunkPlan, copy: LocalCopy, target: string, slot: RemoteSlot, settledBeforeUnixMs: number): void {
  if (slot === 'healthy') {
    plan.deletes.push(copy.index)
    return
  }
  // A corrupt copy is worth nothing to push; the responsible holder rebuilds the target's, then this one goes.
  if (copy.corrupt) return
  if (slot === 'unknown') plan.deferred.push({ index: copy.index, reason: 'target-down' })
  else if (copy.lastPutUnixMs >= settledBeforeUnixMs) plan.deferred.push({ index: copy.index, reason: 'unsettled' })
  else plan.moves.push({ index: copy.index, target })
}
