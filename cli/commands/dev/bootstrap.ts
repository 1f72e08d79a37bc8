/**
 * First-run setup of `cairn dev`'s control plane, idempotent on every later run:
 * the block store `local`, the policy `local`, the first volume, and the cluster map
 * of the storage nodes (republished, with a higher epoch, only when it changed).
 */
import type { Logger } from '../../../core/logger.js'
import type { ClusterMap, ClusterMember, ControlPlane, StoragePolicy } from '../../../control-plane/types.js'
import { AlreadyExistsError, NotFoundError } from '../../../control-plane/types.js'

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

/** The dev cluster map's members: node N on its own failure domain, equal weights (one disk). */
export function devMembers(addresses: readonly string[]): ClusterMember[] {
  return addresses.map((address, i) => ({
    id: `node-${i}`,
    address,
    // No libp2p mesh runs in dev yet; the id is unique and stable, as the map requires.
    peerId: `dev-node-${i}`,
    failureDomain: `node-${i}`,
    weight: 1,
    state: 'active' as const,
  }))
}

/** Publishes `members` unless the stored map already has exactly them; returns the map in force. */
export async function publishMembers(cp: ControlPlane, members: readonly ClusterMember[], logger: Logger): Promise<ClusterMap> {
  const current = await cp.getClusterMap(DEV_BLOCK_STORE)
  const key = (ms: readonly ClusterMember[]): string =>
    JSON.stringify([...ms].sort((a, b) => a.id.localeCompare(b.id)).map((m) => [m.id, m.address, m.peerId, m.failureDomain, m.weight, m.state]))
  if (key(current.members) === key(members)) return current
  const next = await cp.publishClusterMap(DEV_BLOCK_STORE, { epoch: current.epoch + 1, members })
  logger.info({ epoch: next.epoch, members: members.map((m) => `${m.id}@${m.address}`) }, 'cluster map published')
  return next
}
