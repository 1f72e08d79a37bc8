/**
 * StoragePolicy reconciler: Satisfiable says whether the policy's k+m shards
 * can land on distinct failure domains of its BlockStore's cluster map.
 */
import { placeableDomainCount, type ClusterMap } from '../core/cluster-map.js'
import { CONDITION, REASON } from './constants.js'
import type { ReconcilerContext } from './context.js'
import { releaseWhenUnused } from './in-use.js'
import { setCondition, updateStatus } from './status.js'
import type { BlockStoreObject, NodeObject, StoragePolicyObject } from './types.js'

/**
 * The failure domains a policy can spread over: distinct domains of members
 * with weight > 0 (down members count: a node restart must not flip the
 * policy). A policy with its own failureDomainKey reads that label from the
 * member nodes instead of the BlockStore's domains.
 */
export function failureDomainsFor(policy: StoragePolicyObject, bs: BlockStoreObject, nodes: ReadonlyMap<string, NodeObject>): number {
  const members = bs.status?.clusterMap?.members ?? []
  const key = policy.spec.failureDomainKey
  const own = key !== undefined && key !== '' && key !== bs.spec.failureDomainKey
  const core: ClusterMap = {
    epoch: bs.status?.clusterMap?.epoch ?? 0,
    members: members.map((m) => ({
      id: m.id,
      address: m.address,
      peerId: m.peerId ?? m.id,
      failureDomain: own ? (nodes.get(m.node)?.metadata.labels?.[key] ?? m.node) : m.failureDomain,
      weight: m.weightBytes,
      state: 'active',
    })),
  }
  return placeableDomainCount(core)
}

/** Reconciles the StoragePolicy `name`. */
export async function reconcileStoragePolicy(ctx: ReconcilerContext, name: string): Promise<void> {
  const found = await ctx.kube.getCr<StoragePolicyObject>('StoragePolicy', name)
  if (found === undefined) return
  if (found.metadata.deletionTimestamp !== undefined) {
    await releaseWhenUnused(ctx, 'StoragePolicy', found, 'storagePolicy')
    return
  }
  const nodes = new Map(ctx.caches.nodes.list().map((n) => [n.metadata.name, n]))
  await updateStatus<StoragePolicyObject>(ctx.kube, 'StoragePolicy', name, (policy) => {
    const generation = policy.metadata.generation ?? 0
    const bs = ctx.caches.blockStores.get(policy.spec.blockStore)
    const k = policy.spec.dataShards
    const m = policy.spec.parityShards
    const old = policy.status ?? {}
    if (bs === undefined) {
      const condition = { type: CONDITION.Satisfiable, status: 'False' as const, reason: REASON.BlockStoreNotFound, message: `block store ${JSON.stringify(policy.spec.blockStore)} does not exist`, observedGeneration: generation }
      return { ...old, observedGeneration: generation, failureDomains: 0, conditions: setCondition(old.conditions, condition) }
    }
    const domains = failureDomainsFor(policy, bs, nodes)
    const ok = k + m <= domains
    const message = ok
      ? `k+m = ${k}+${m} = ${k + m} shards fit on ${domains} failure domains of block store ${bs.metadata.name}`
      : `k+m = ${k}+${m} = ${k + m} shards need ${k + m} failure domains; block store ${bs.metadata.name} has ${domains}`
    const condition = { type: CONDITION.Satisfiable, status: ok ? ('True' as const) : ('False' as const), reason: ok ? REASON.EnoughFailureDomains : REASON.InsufficientFailureDomains, message, observedGeneration: generation }
    return { ...old, observedGeneration: generation, failureDomains: domains, conditions: setCondition(old.conditions, condition) }
  })
}
