/**
 * Volume and Snapshot reconcilers: a finalizer on each, a Volume's
 * `status.health` from the cluster map and the repair backlog, readiness and
 * health as conditions, and a Kubernetes Event whenever the Ready state
 * (status and reason) or the health changes.
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
import type { BlockStoreObject, Condition, KubeObject, SnapshotObject, VolumeObject } from './types.js'

type Verdict = Omit<Condition, 'lastTransitionTime' | 'observedGeneration' | 'type'> & { degraded: boolean }

type Health = NonNullable<VolumeObject['status']>['health'] & string

/** A volume's health and why. */
export interface HealthVerdict {
  health: Health
  message: string
}

/**
 * Health of the volumes of block store `bs` stored with m = `parityShards`,
 * from the published cluster map and the repair backlog the storage nodes
 * report. A member that is not Up (or Draining, which still serves) holds
 * shards nobody can read until it returns or repair rebuilds them. A chunk
 * keeps at most one shard per failure domain, so it can lose at most
 * min(members out, domains with a member out) shards: more than m and some
 * chunk may be unreadable (Unavailable); any member out or any shard awaiting
 * repair is Degraded. Without a published map nothing is known yet.
 */
export function volumeHealth(bs: BlockStoreObject | undefined, parityShards: number | undefined): HealthVerdict {
  const members = bs?.status?.clusterMap?.members ?? []
  if (bs === undefined || parityShards === undefined || members.length === 0) return { health: 'Unknown', message: 'no cluster map published yet' }
  const out = members.filter((m) => m.state !== 'Up' && m.state !== 'Draining')
  const lost = Math.min(out.length, new Set(out.map((m) => m.failureDomain)).size)
  const backlog = bs.status?.repair?.backlogShards ?? 0
  const outText = out.length === 0 ? 'every member is Up' : `members out: ${out.map((m) => `${m.id} (${m.state})`).join(', ')}`
  if (lost > parityShards) return { health: 'Unavailable', message: `${outText}; more than the ${parityShards} lost shards per chunk the policy tolerates` }
  if (out.length > 0 || backlog > 0) return { health: 'Degraded', message: `${outText}; repair backlog ${backlog} shards` }
  return { health: 'Healthy', message: 'every member is Up and no shard awaits repair' }
}

/** Ready and Degraded of a volume from its references and its health. */
export function volumeVerdict(ctx: ReconcilerContext, vol: VolumeObject, health: HealthVerdict = { health: vol.status?.health ?? 'Unknown', message: '' }): Verdict {
  const bs = ctx.caches.blockStores.get(vol.spec.blockStore)
  if (bs === undefined) return { status: 'False', reason: REASON.BlockStoreNotFound, message: `block store ${vol.spec.blockStore} does not exist`, degraded: false }
  const policy = ctx.caches.storagePolicies.get(vol.spec.storagePolicy)
  if (policy === undefined) return { status: 'False', reason: REASON.StoragePolicyNotFound, message: `storage policy ${vol.spec.storagePolicy} does not exist`, degraded: false }
  const satisfiable = findCondition(policy.status?.conditions, CONDITION.Satisfiable)
  if (satisfiable?.status === 'False') return { status: 'False', reason: REASON.PolicyUnsatisfiable, message: satisfiable.message ?? 'storage policy is not satisfiable', degraded: false }
  const why = health.message === '' ? '' : `: ${health.message}`
  switch (health.health) {
    case 'Healthy':
      return { status: 'True', reason: REASON.Healthy, message: `every shard is in place${why}`, degraded: false }
    case 'Degraded':
      return { status: 'True', reason: REASON.Degraded, message: `readable, with shards missing or awaiting repair${why}`, degraded: true }
    case 'Unavailable':
      return { status: 'False', reason: REASON.Unavailable, message: `fewer than k shards of some chunk may be reachable${why}`, degraded: true }
    default:
      return { status: 'Unknown', reason: REASON.HealthUnknown, message: `health not known yet${why}`, degraded: false }
  }
}

/** Ready of a snapshot: readyToUse as the control plane set it, or why it cannot become ready. */
export function snapshotVerdict(ctx: ReconcilerContext, snap: SnapshotObject): Verdict {
  if (snap.status?.readyToUse === true) return { status: 'True', reason: REASON.SnapshotReady, message: 'snapshot head saved', degraded: false }
  if (ctx.caches.volumes.get(snap.spec.volume) === undefined) return { status: 'False', reason: REASON.VolumeNotFound, message: `volume ${snap.spec.volume} does not exist`, degraded: false }
  return { status: 'False', reason: REASON.SnapshotPending, message: 'waiting for the volume head to be saved', degraded: false }
}

/** Reconciles the Volume `name`: writes its health and the conditions that follow from it. */
export async function reconcileVolume(ctx: ReconcilerContext, name: string): Promise<void> {
  await reconcileWithVerdict<VolumeObject>(ctx, 'Volume', VOLUME_FINALIZER, name, (v) => {
    const health = volumeHealth(ctx.caches.blockStores.get(v.spec.blockStore), ctx.caches.storagePolicies.get(v.spec.storagePolicy)?.spec.parityShards)
    return { ...volumeVerdict(ctx, v, health), extra: { health: health.health } }
  })
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
  verdictOf: (obj: T) => Verdict & { extra?: Record<string, unknown> },
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
  let healthBefore: unknown
  let healthAfter: unknown
  const written = await updateStatus<T>(ctx.kube, kind, name, (fresh) => {
    const { degraded, extra, ...ready } = verdictOf(fresh)
    const generation = fresh.metadata.generation ?? 0
    const old = { ...fresh.status, ...extra }
    healthBefore = fresh.status?.health
    healthAfter = old.health
    before = findCondition(old.conditions, CONDITION.Ready)
    let conditions = setCondition(old.conditions, { type: CONDITION.Ready, ...ready, observedGeneration: generation })
    if (kind === 'Volume') {
      conditions = setCondition(conditions, { type: CONDITION.Degraded, status: degraded ? 'True' : 'False', reason: degraded ? ready.reason ?? REASON.Degraded : REASON.Healthy, message: ready.message ?? '', observedGeneration: generation })
    }
    after = findCondition(conditions, CONDITION.Ready)
    return kind === 'Volume' ? { ...old, observedGeneration: generation, conditions } : { ...old, conditions }
  })
  if (written === undefined || after === undefined) return
  const type = after.status === 'True' && healthAfter !== 'Degraded' ? 'Normal' : 'Warning'
  // One Event per change: of Ready when it changed, else of health alone (e.g. Degraded while the policy is unsatisfiable).
  if (before?.status !== after.status || before.reason !== after.reason) {
    await ctx.events.record(written, kind, type, after.reason ?? 'StateChanged', `Ready=${after.status}: ${after.message ?? ''}`)
  } else if (healthBefore !== healthAfter && healthAfter !== undefined) {
    await ctx.events.record(written, kind, type, `Health${String(healthAfter)}`, `health ${String(healthBefore ?? 'Unknown')} → ${String(healthAfter)}`)
  }
}
