/**
 * Volume and Snapshot reconcilers: a finalizer on each, readiness and health
 * as conditions, and a Kubernetes Event whenever the Ready state (status and
 * reason) changes.
 *
 * The deletion hook only records that the deletion was handled: freeing the
 * volume's chunks is mark-and-sweep garbage collection (a later issue), whose
 * roots are the volumes and snapshots that still exist, so a deleted volume's
 * chunks become unreachable and the collector reclaims them without the
 * operator doing more here.
 */
import { CONDITION, REASON, SNAPSHOT_FINALIZER, VOLUME_FINALIZER, type CairnKind } from './constants.js'
import type { ReconcilerContext } from './context.js'
import { ensureFinalizer, findCondition, setCondition, updateStatus } from './status.js'
import type { Condition, KubeObject, SnapshotObject, VolumeObject } from './types.js'

type Verdict = Omit<Condition, 'lastTransitionTime' | 'observedGeneration' | 'type'> & { degraded: boolean }

/** Ready and Degraded of a volume from its references and the health storage nodes report in status. */
export function volumeVerdict(ctx: ReconcilerContext, vol: VolumeObject): Verdict {
  const bs = ctx.caches.blockStores.get(vol.spec.blockStore)
  if (bs === undefined) return { status: 'False', reason: REASON.BlockStoreNotFound, message: `block store ${vol.spec.blockStore} does not exist`, degraded: false }
  const policy = ctx.caches.storagePolicies.get(vol.spec.storagePolicy)
  if (policy === undefined) return { status: 'False', reason: REASON.StoragePolicyNotFound, message: `storage policy ${vol.spec.storagePolicy} does not exist`, degraded: false }
  const satisfiable = findCondition(policy.status?.conditions, CONDITION.Satisfiable)
  if (satisfiable?.status === 'False') return { status: 'False', reason: REASON.PolicyUnsatisfiable, message: satisfiable.message ?? 'storage policy is not satisfiable', degraded: false }
  switch (vol.status?.health) {
    case 'Healthy':
      return { status: 'True', reason: REASON.Healthy, message: 'every shard is in place', degraded: false }
    case 'Degraded':
      return { status: 'True', reason: REASON.Degraded, message: 'readable, with shards missing or awaiting repair', degraded: true }
    case 'Unavailable':
      return { status: 'False', reason: REASON.Unavailable, message: 'fewer than k shards of some chunk are reachable', degraded: true }
    default:
      return { status: 'Unknown', reason: REASON.HealthUnknown, message: 'no health report from the storage nodes yet', degraded: false }
  }
}

/** Ready of a snapshot: readyToUse as the control plane set it, or why it cannot become ready. */
export function snapshotVerdict(ctx: ReconcilerContext, snap: SnapshotObject): Verdict {
  if (snap.status?.readyToUse === true) return { status: 'True', reason: REASON.SnapshotReady, message: 'snapshot head saved', degraded: false }
  if (ctx.caches.volumes.get(snap.spec.volume) === undefined) return { status: 'False', reason: REASON.VolumeNotFound, message: `volume ${snap.spec.volume} does not exist`, degraded: false }
  return { status: 'False', reason: REASON.SnapshotPending, message: 'waiting for the volume head to be saved', degraded: false }
}

/** Reconciles the Volume `name`. */
export async function reconcileVolume(ctx: ReconcilerContext, name: string): Promise<void> {
  await reconcileWithVerdict<VolumeObject>(ctx, 'Volume', VOLUME_FINALIZER, name, (v) => volumeVerdict(ctx, v))
}

/** Reconciles the Snapshot `name`. */
export async function reconcileSnapshot(ctx: ReconcilerContext, name: string): Promise<void> {
  await reconcileWithVerdict<SnapshotObject>(ctx, 'Snapshot', SNAPSHOT_FINALIZER, name, (s) => snapshotVerdict(ctx, s))
}

type WithConditions = KubeObject & { status?: { conditions?: Condition[]; observedGeneration?: number } & Record<string, unknown> }

async function reconcileWithVerdict<T extends WithConditions>(
  ctx: ReconcilerContext,
  kind: CairnKind,
  finalizer: string,
  name: string,
  verdictOf: (obj: T) => Verdict,
): Promise<void> {
  const found = await ctx.kube.getCr<T>(kind, name)
  if (found === undefined) return
  if (found.metadata.deletionTimestamp !== undefined) {
    if (!(found.metadata.finalizers ?? []).includes(finalizer)) return
    await ctx.events.record(found, kind, 'Normal', REASON.Deleting, `${kind} deleted; its chunks are left to garbage collection`)
    await ensureFinalizer(ctx.kube, kind, found, finalizer, false)
    return
  }
  await ensureFinalizer(ctx.kube, kind, found, finalizer, true)
  let before: Condition | undefined
  let after: Condition | undefined
  const written = await updateStatus<T>(ctx.kube, kind, name, (fresh) => {
    const { degraded, ...ready } = verdictOf(fresh)
    const generation = fresh.metadata.generation ?? 0
    const old = fresh.status ?? {}
    before = findCondition(old.conditions, CONDITION.Ready)
    let conditions = setCondition(old.conditions, { type: CONDITION.Ready, ...ready, observedGeneration: generation })
    if (kind === 'Volume') {
      conditions = setCondition(conditions, { type: CONDITION.Degraded, status: degraded ? 'True' : 'False', reason: degraded ? ready.reason ?? REASON.Degraded : REASON.Healthy, message: ready.message ?? '', observedGeneration: generation })
    }
    after = findCondition(conditions, CONDITION.Ready)
    return kind === 'Volume' ? { ...old, observedGeneration: generation, conditions } : { ...old, conditions }
  })
  if (written === undefined || after === undefined) return
  if (before?.status === after.status && before.reason === after.reason) return
  const type = after.status === 'True' ? 'Normal' : 'Warning'
  await ctx.events.record(written, kind, type, after.reason ?? 'StateChanged', `Ready=${after.status}: ${after.message ?? ''}`)
}
