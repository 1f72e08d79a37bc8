/**
 * First-run setup of `cairn dev`'s control plane, idempotent on every later run:
 * the block store `local`, the policy `local`, the first volume, and the cluster map
 * of the storage nodes (republished, with a higher epoch, only when it changed).
 */
import type { Logger } from '../../../core/logger.js'
import type { ClusterMap, ClusterMember, ControlPlane, StoragePolicy } from '../../../control-plane/types.js'
import { AlreadyExistsError, ConflictError, NotFoundError } from '../../../control-plane/types.js'
import { CairnError } from '../../../core/errors.js'

export const DEV_BLOCK_STORE = 'local'
export const DEV_POLICY = 'local'

export interface BootstrapInput {
  nodesDir: string
  dataShards: number
  parityShards: number
  chunkSizeBytes: number
  volume: string
  volumeSizeBytes: number
}

/**
 * Creates what is missing and returns the policy in force. A policy from an earlier
 * run wins over different flags: its chunks are already coded with it.
 */
export async function bootstrap(cp: ControlPlane, input: BootstrapInput, logger: Logger): Promise<StoragePolicy> {
  await cp.createBlockStore({ name: DEV_BLOCK_STORE, hostPath: input.nodesDir, failureDomainKey: 'cairn.dev/node' }).catch(async (err: unknown) => {
    if (!(err instanceof AlreadyExistsError)) throw err
    return cp.getBlockStore(DEV_BLOCK_STORE)
  })
  let policy: StoragePolicy
  try {
    policy = await cp.createStoragePolicy({
      name: DEV_POLICY,
      dataShards: input.dataShards,
      parityShards: input.parityShards,
      chunkSizeBytes: input.chunkSizeBytes,
      failureDomainKey: 'cairn.dev/node',
    })
  } catch (err) {
    if (!(err instanceof AlreadyExistsError)) throw err
    policy = await cp.getStoragePolicy(DEV_POLICY)
    logger.warn(
      { dataShards: policy.dataShards, parityShards: policy.parityShards, chunkSizeBytes: policy.chunkSizeBytes },
      'keeping the policy of the first run; its chunks are already coded with it',
    )
  }
  try {
    await cp.getVolume(input.volume)
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err
    await cp.createVolume({ name: input.volume, blockStore: DEV_BLOCK_STORE, storagePolicy: DEV_POLICY, sizeBytes: input.volumeSizeBytes })
    logger.info({ volume: input.volume, sizeBytes: input.volumeSizeBytes }, 'volume created')
  }
  return policy
}

/** One dev storage node as the cluster map names it. */
export interface DevMemberInput {
  /** `node-N` */
  id: string
  /** gRPC `host:port` */
  address: string
  /** Its libp2p peer id (from the identity in its data directory). */
  peerId: string
  /** Its mesh `host:port`. */
  meshAddress: string
  /** Set by `cairn node add --failure-domain`. @default its id (one node, one domain) */
  failureDomain?: string
  /** Set by `cairn node add --weight`. @default 1 */
  weight?: number
}

/**
 * The dev cluster map's members: each node on its own failure domain, equal weights
 * (one disk), unless `cairn node add` gave the node others. A member the supervisor has marked `down` stays down until it is healthy
 * again: restarting `cairn dev` does not forget an outage.
 */
export function devMembers(nodes: readonly DevMemberInput[], previous: readonly ClusterMember[] = []): ClusterMember[] {
  return nodes.map((n) => ({
    id: n.id,
    address: n.address,
    peerId: n.peerId,
    meshAddress: n.meshAddress,
    failureDomain: n.failureDomain ?? n.id,
    weight: n.weight ?? 1,
    state: previous.find((p) => p.id === n.id)?.state ?? ('active' as const),
  }))
}

/** A cluster-map update kept losing the race against other writers. */
export class ClusterMapContentionError extends CairnError {
  override readonly name = 'ClusterMapContentionError'
  readonly kind = 'aborted'
}

/**
 * Read-modify-write of the dev map's members: `change` gets the current members and
 * returns the new ones, or undefined for no change. Another writer (the supervisor's
 * health monitor, `cairn node remove`, a restarted node's new identity) may publish in
 * between: the epoch check turns that into a conflict, and the change is recomputed
 * on the newer map (bounded retries).
 */
export async function updateMembers(
  cp: ControlPlane,
  change: (members: readonly ClusterMember[]) => readonly ClusterMember[] | undefined,
  logger: Logger,
  attemptsMax = 8,
): Promise<ClusterMap> {
  for (let attempt = 1; ; attempt++) {
    const current = await cp.getClusterMap(DEV_BLOCK_STORE)
    const members = change(current.members)
    if (members === undefined || memberKey(members) === memberKey(current.members)) return current
    try {
      const next = await cp.publishClusterMap(DEV_BLOCK_STORE, { epoch: current.epoch + 1, members })
      logger.info({ epoch: next.epoch, members: members.map((m) => `${m.id}@${m.address}:${m.state}`) }, 'cluster map published')
      return next
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err
      if (attempt >= attemptsMax) throw new ClusterMapContentionError(`cluster map of ${DEV_BLOCK_STORE} changed under ${attempt} attempts to update it`, { cause: err })
    }
  }
}

/** Publishes `members` unless the stored map already has exactly them; returns the map in force. */
export async function publishMembers(cp: ControlPlane, members: readonly ClusterMember[], logger: Logger): Promise<ClusterMap> {
  return updateMembers(cp, () => members, logger)
}

/** Order-independent identity of a member list: any difference is a new epoch. */
function memberKey(members: readonly ClusterMember[]): string {
  return JSON.stringify([...members].sort((a, b) => a.id.localeCompare(b.id)).map((m) => [m.id, m.address, m.peerId, m.meshAddress ?? null, m.failureDomain, m.weight, m.state]))
}
