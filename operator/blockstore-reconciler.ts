/**
 * BlockStore reconciler: an idempotent function of (BlockStore spec, nodes,
 * storage-node pods, DaemonSet status) that labels exactly the eligible nodes,
 * keeps the owned DaemonSet, Service and Secret as desired, and publishes
 * status with the cluster map. It writes only what differs, so running it
 * twice, or after a crash at any point, converges to the same state.
 */
import {
  BLOCKSTORE_FINALIZER,
  BLOCKSTORE_LABEL,
  CAPACITY_BYTES_ANNOTATION,
  COMPONENT_LABEL,
  CONDITION,
  FIELD_MANAGER,
  IN_USE_FINALIZER,
  MANAGED_BY_LABEL,
  NAME_LABEL,
  REASON,
  SPEC_HASH_ANNOTATION,
  STORAGE_NODE_SERVICE_ACCOUNT,
  USED_BYTES_ANNOTATION,
  ownedNames,
  storageNodeLabel,
} from './constants.js'
import type { ReconcilerContext } from './context.js'
import { buildMembers, durabilityOf, memberReadiness, nextClusterMap, nodeEligibility, type MemberInputs } from './membership.js'
import { durabilityStatus } from './durability-status.js'
import { releaseWhenUnused } from './in-use.js'
import { ensureFinalizer, setCondition, updateStatus } from './status.js'
import { desiredDaemonSet, desiredService, isOwnedBy, newSecret, specHash } from './storage-node-objects.js'
import { tryParseQuantity } from './quantity.js'
import type { BlockStoreObject, BlockStoreStatus, CrdMember, DaemonSetObject, NodeObject } from './types.js'
import type { UsageReport } from './usage-poller.js'

/**
 * Reconciles the BlockStore `name`.
 * @returns milliseconds after which to run again: when a not-ready member's down timeout runs out
 */
export async function reconcileBlockStore(ctx: ReconcilerContext, name: string): Promise<number | void> {
  let found = await ctx.kube.getCr<BlockStoreObject>('BlockStore', name)
  if (found?.metadata.deletionTimestamp !== undefined) found = await releaseWhenUnused(ctx, 'BlockStore', found, 'blockStore')
  // Still in use by volumes: keep serving them until the ControlPlane's protection lets go.
  const inUse = found?.metadata.finalizers?.includes(IN_USE_FINALIZER) === true
  if (found === undefined || (found.metadata.deletionTimestamp !== undefined && !inUse)) {
    // Gone (or going): the labels are the one thing owner references cannot clean up.
    await syncNodeLabels(ctx, name, new Set())
    ctx.notReady.forget(name)
    if (found !== undefined) await ensureFinalizer(ctx.kube, 'BlockStore', found, BLOCKSTORE_FINALIZER, false)
    return
  }
  const bs = await ensureFinalizer(ctx.kube, 'BlockStore', found, BLOCKSTORE_FINALIZER, true)
  const nodes = ctx.caches.nodes.list()
  const eligible = nodes.filter((n) => nodeEligibility(bs.spec, n).eligible)
  await syncNodeLabels(ctx, name, new Set(eligible.map((n) => n.metadata.name)))
  await ensureSecret(ctx, bs)
  await ensureServiceAccount(ctx)
  await ensureOwned(ctx, bs, 'Service', desiredService(bs, ctx.namespace))
  const ds = await ensureOwned(ctx, bs, 'DaemonSet', desiredDaemonSet(bs, ctx.namespace, ctx.image))
  const pods = ctx.caches.pods.list().filter((p) => p.metadata.labels?.[BLOCKSTORE_LABEL] === name)
  const reports = ctx.usage.reports(name)
  const nowMs = ctx.now()
  const notReadySinceMs = ctx.notReady.observe(name, memberReadiness(eligible, pods), nowMs)
  const downTimeoutMs = durabilityOf(bs.spec).memberDownTimeoutSeconds * 1000
  const inputs: MemberInputs = {
    capacityByNode: new Map([...reports].map(([node, r]) => [node, r.capacityBytes])),
    peerIdByNode: new Map([...reports].flatMap(([node, r]) => (r.peerId === undefined ? [] : [[node, r.peerId] as const]))),
    notReadySinceMs,
    nowMs,
    downTimeoutMs,
  }
  const nodeByName = new Map(nodes.map((n) => [n.metadata.name, n]))
  let before: readonly CrdMember[] = []
  let after: readonly CrdMember[] = []
  const written = await updateStatus<BlockStoreObject>(ctx.kube, 'BlockStore', name, (fresh) => {
    if (fresh.metadata.uid !== bs.metadata.uid) return undefined
    // Built from the fresh object: the weights and addresses a member keeps are the ones stored now.
    before = fresh.status?.clusterMap?.members ?? []
    const members = buildMembers(bs.spec, eligible, pods, { ...inputs, previous: before })
    after = members
    return blockStoreStatus(fresh, members, ds as DaemonSetObject, { nodes: nodeByName, reports })
  })
  if (written !== undefined) await recordMemberChanges(ctx, written, before, after)
  return nextDownDeadlineMs(after, notReadySinceMs, nowMs, downTimeoutMs)
}

/** When the next Up member that is not ready runs out of time (ms from now), or undefined. */
function nextDownDeadlineMs(members: readonly CrdMember[], notReadySinceMs: ReadonlyMap<string, number>, nowMs: number, downTimeoutMs: number): number | undefined {
  let next: number | undefined
  for (const m of members) {
    const since = notReadySinceMs.get(m.id)
    if (since === undefined || m.state === 'Down' || m.state === 'Joining') continue
    const left = Math.max(1, since + downTimeoutMs - nowMs)
    next = next === undefined ? left : Math.min(next, left)
  }
  return next
}

/** An Event when a member goes Down or comes back Up: the moments repair starts and stops caring. */
async function recordMemberChanges(ctx: ReconcilerContext, bs: BlockStoreObject, before: readonly CrdMember[], after: readonly CrdMember[]): Promise<void> {
  const old = new Map(before.map((m) => [m.id, m.state]))
  for (const m of after) {
    const was = old.get(m.id)
    if (was === m.state || was === undefined) continue
    if (m.state === 'Down') await ctx.events.record(bs, 'BlockStore', 'Warning', REASON.MemberDown, `member ${m.id} is Down: not ready for the member down timeout; its shards are rebuilt on the other members`)
    else if (m.state === 'Up' && was === 'Down') await ctx.events.record(bs, 'BlockStore', 'Normal', REASON.MemberUp, `member ${m.id} is Up again`)
  }
}

/** The storage nodes' ServiceAccount (one per namespace, not owned: every block store's pods share it). Its read access to BlockStores comes from the Helm chart's ClusterRoleBinding. */
async function ensureServiceAccount(ctx: ReconcilerContext): Promise<void> {
  const { kube, namespace } = ctx
  const name = STORAGE_NODE_SERVICE_ACCOUNT
  const existing = await kube.readOptional(`get serviceaccount ${name}`, () => kube.core.readNamespacedServiceAccount({ name, namespace }))
  if (existing !== undefined) return
  const body = { metadata: { name, namespace, labels: { [NAME_LABEL]: 'cairn', [COMPONENT_LABEL]: 'storage-node', [MANAGED_BY_LABEL]: FIELD_MANAGER } } }
  await kube.write('ServiceAccount', `create serviceaccount ${name}`, () => kube.core.createNamespacedServiceAccount({ namespace, body }))
}

/** Sets the BlockStore's label on `eligible` nodes and removes it from every other node. */
async function syncNodeLabels(ctx: ReconcilerContext, blockStore: string, eligible: ReadonlySet<string>): Promise<void> {
  const key = storageNodeLabel(blockStore)
  for (const node of ctx.caches.nodes.list()) {
    const has = node.metadata.labels?.[key] === 'true'
    const want = eligible.has(node.metadata.name)
    if (has === want) continue
    await ctx.kube.patchNodeLabels(node.metadata.name, { [key]: want ? 'true' : null })
    ctx.logger.info({ blockStore, node: node.metadata.name, eligible: want }, want ? 'labelled storage node' : 'unlabelled storage node')
  }
}

async function ensureSecret(ctx: ReconcilerContext, bs: BlockStoreObject): Promise<void> {
  const name = ownedNames(bs.metadata.name).secret
  const namespace = ctx.namespace
  const existing = await ctx.kube.readOptional(`get secret ${name}`, () => ctx.kube.core.readNamespacedSecret({ name, namespace }))
  if (existing !== undefined && existing.data?.token !== undefined && existing.data.token !== '') return
  const fresh = newSecret(bs, namespace)
  if (existing === undefined) {
    await ctx.kube.write('Secret', `create secret ${name}`, () => ctx.kube.core.createNamespacedSecret({ namespace, body: fresh as never }))
    return
  }
  // A Secret without a token (emptied by hand) gets one; any other key is kept.
  const body = { ...existing, data: { ...existing.data, token: (fresh.data as { token: string }).token } }
  await ctx.kube.write('Secret', `add token to secret ${name}`, () => ctx.kube.core.replaceNamespacedSecret({ name, namespace, body }))
}

type OwnedKind = 'Service' | 'DaemonSet'

/** Creates the owned object, or replaces it when its spec hash or controller reference differs. Returns it as stored. */
async function ensureOwned(ctx: ReconcilerContext, bs: BlockStoreObject, kind: OwnedKind, desired: Record<string, unknown> & { spec: unknown }): Promise<unknown> {
  const { kube, namespace } = ctx
  const name = (desired.metadata as { name: string }).name
  const api: { read: () => Promise<unknown>; create: (body: never) => Promise<unknown>; replace: (body: never) => Promise<unknown> } = {
    read: () => (kind === 'Service' ? kube.core.readNamespacedService({ name, namespace }) : kube.apps.readNamespacedDaemonSet({ name, namespace })),
    create: (body: never) => (kind === 'Service' ? kube.core.createNamespacedService({ namespace, body }) : kube.apps.createNamespacedDaemonSet({ namespace, body })),
    replace: (body: never) =>
      kind === 'Service' ? kube.core.replaceNamespacedService({ name, namespace, body }) : kube.apps.replaceNamespacedDaemonSet({ name, namespace, body }),
  }
  const existing = (await kube.readOptional(`get ${kind} ${name}`, api.read)) as { metadata?: { annotations?: Record<string, string>; resourceVersion?: string }; spec?: { clusterIP?: string } } | undefined
  if (existing === undefined) return kube.write(kind, `create ${kind} ${name}`, () => api.create(desired as never))
  const upToDate = existing.metadata?.annotations?.[SPEC_HASH_ANNOTATION] === specHash(desired.spec) && isOwnedBy(existing as never, bs)
  if (upToDate) return existing
  const body = { ...desired, metadata: { ...(desired.metadata as object), resourceVersion: existing.metadata?.resourceVersion } }
  ctx.logger.info({ kind, name }, 'updating owned object')
  return kube.write(kind, `update ${kind} ${name}`, () => api.replace(body as never))
}

/** The status to publish, from the freshly read object (so the epoch moves from what is stored, never from a stale copy). */
function blockStoreStatus(fresh: BlockStoreObject, members: CrdMember[], ds: DaemonSetObject, observed: Observed): BlockStoreStatus {
  const old = fresh.status ?? {}
  const generation = fresh.metadata.generation ?? 0
  const eligible = members.length
  const readyNodes = ds.status?.numberReady ?? 0
  const down = members.filter((m) => m.state === 'Down').length
  const { capacityBytes, usedBytes } = usage(members, observed, old)
  let conditions = old.conditions
  const set = (type: string, ok: boolean, reason: string, message: string): void => {
    conditions = setCondition(conditions, { type, status: ok ? 'True' : 'False', reason, message, observedGeneration: generation })
  }
  const rolling = rolloutInProgress(ds, eligible)
  if (eligible === 0) set(CONDITION.Ready, false, REASON.NoEligibleNodes, 'no node matches the selector and eligibility rules')
  else if (readyNodes >= eligible && down === 0) set(CONDITION.Ready, true, REASON.AllNodesReady, `${readyNodes} of ${eligible} storage nodes ready`)
  else set(CONDITION.Ready, false, REASON.NodesNotReady, `${readyNodes} of ${eligible} storage nodes ready, ${down} down`)
  const durability = durabilityStatus(observed.reports, old)
  const backlog = durability.repair?.backlogShards ?? 0
  const nodesDegraded = eligible > 0 && (down > 0 || (readyNodes > 0 && readyNodes < eligible))
  const degradedReason = nodesDegraded ? REASON.NodesNotReady : backlog > 0 ? REASON.RepairBacklog : REASON.AllNodesReady
  set(CONDITION.Degraded, nodesDegraded || backlog > 0, degradedReason, `${down} members down, ${readyNodes} of ${eligible} ready, ${backlog} shards awaiting repair`)
  set(CONDITION.Progressing, rolling, rolling ? REASON.RolloutInProgress : REASON.RolloutComplete, rolling ? 'storage-node pods are being scheduled or updated' : 'storage-node DaemonSet is up to date')
  return {
    ...old,
    observedGeneration: generation,
    eligibleNodes: eligible,
    readyNodes,
    capacityBytes,
    usedBytes,
    clusterMap: nextClusterMap(old.clusterMap, members),
    ...durability,
    conditions,
  }
}

interface Observed {
  nodes: ReadonlyMap<string, NodeObject>
  reports: ReadonlyMap<string, UsageReport>
}

/**
 * Capacity and usage summed over members: each node's own report, else its node
 * annotations, else its weight (capacity) and nothing (usage). Before any node has
 * reported (an operator that just started), the stored usage stands rather than
 * dropping to zero until the first poll.
 */
function usage(members: readonly CrdMember[], observed: Observed, old: BlockStoreStatus): { capacityBytes: number; usedBytes: number } {
  let capacityBytes = 0
  let usedBytes = 0
  let reported = false
  for (const m of members) {
    const report = observed.reports.get(m.node)
    const annotations = observed.nodes.get(m.node)?.metadata.annotations ?? {}
    const annotatedUsed = tryParseQuantity(annotations[USED_BYTES_ANNOTATION])
    reported ||= report !== undefined || annotatedUsed !== undefined
    capacityBytes += report?.capacityBytes ?? tryParseQuantity(annotations[CAPACITY_BYTES_ANNOTATION]) ?? m.weightBytes
    usedBytes += report?.usedBytes ?? annotatedUsed ?? 0
  }
  return { capacityBytes, usedBytes: reported || members.length === 0 ? usedBytes : (old.usedBytes ?? 0) }
}

function rolloutInProgress(ds: DaemonSetObject, eligible: number): boolean {
  const st = ds.status
  if (st === undefined) return eligible > 0
  if ((st.observedGeneration ?? 0) < (ds.metadata?.generation ?? 0)) return true
  return (st.desiredNumberScheduled ?? 0) !== eligible || (st.updatedNumberScheduled ?? 0) < (st.desiredNumberScheduled ?? 0)
}
