/**
 * Garbage collection's roots in one block store: every volume head, every
 * snapshot root and every pin, each with the storage policy whose chunk store
 * can read its pages.
 */
import { CID } from 'multiformats/cid'
import type { ControlPlane } from '../../control-plane/types.js'
import { RAW_CODEC } from '../../core/cid.js'

/** A manifest root and the policy of the volume or snapshot that holds it. */
export interface ManifestRoot {
  cid: CID
  /** StoragePolicy name; undefined for a pinned page (any policy of the block store may read it). */
  policy: string | undefined
  /** What named it, for logs: `volume/NAME`, `snapshot/NAME` or `pin`. */
  source: string
}

export interface Roots {
  manifests: ManifestRoot[]
  /** Pinned raw chunks: marked alone, nothing to walk. */
  chunks: CID[]
  /** Policies of the block store's volumes and snapshots, in first-seen order. */
  policies: string[]
}

/** Page size of the control-plane listings. */
const LIST_PAGE = 500

/** Reads the block store's roots from the control plane (NotFoundError if it does not exist). */
export async function collectRoots(cp: ControlPlane, blockStore: string): Promise<Roots> {
  await cp.getBlockStore(blockStore)
  const roots: Roots = { manifests: [], chunks: [], policies: [] }
  const policies = new Set<string>()
  const addRoot = (rootCid: string | null, policy: string, source: string): void => {
    policies.add(policy)
    if (rootCid !== null) roots.manifests.push({ cid: CID.parse(rootCid), policy, source })
  }
  let token: string | undefined
  do {
    const page = await cp.listVolumes({ limit: LIST_PAGE, ...(token === undefined ? {} : { continue: token }) })
    for (const v of page.items) if (v.blockStore === blockStore) addRoot(v.status.head.rootCid, v.storagePolicy, `volume/${v.name}`)
    token = page.continue
  } while (token !== undefined)
  do {
    const page = await cp.listSnapshots({ limit: LIST_PAGE, ...(token === undefined ? {} : { continue: token }) })
    for (const s of page.items) if (s.blockStore === blockStore) addRoot(s.status.rootCid, s.storagePolicy, `snapshot/${s.name}`)
    token = page.continue
  } while (token !== undefined)
  for (const pin of await cp.listPins(blockStore)) {
    const cid = CID.parse(pin.cid)
    if (cid.code === RAW_CODEC) roots.chunks.push(cid)
    else roots.manifests.push({ cid, policy: undefined, source: 'pin' })
  }
  roots.policies = [...policies]
  return roots
}
