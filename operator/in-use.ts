/**
 * Completes `kubectl delete` of a BlockStore or StoragePolicy that the
 * Kubernetes ControlPlane protects with `cairn.dev/in-use-protection`
 * (docs/adr/0012): once no Volume uses the object, the finalizer goes. The
 * check lists volumes from the API server, not the cache, so a volume created
 * a moment ago is not missed.
 */
import { GROUP, IN_USE_FINALIZER, PLURAL, VERSION, type CairnKind } from './constants.js'
import type { ReconcilerContext } from './context.js'
import { ensureFinalizer } from './status.js'
import type { KubeObject, VolumeObject } from './types.js'

/** Removes the in-use finalizer of a deleting `obj` when no volume refers to it through `field`; returns the object as it now stands. */
export async function releaseWhenUnused<T extends KubeObject>(ctx: ReconcilerContext, kind: CairnKind, obj: T, field: 'blockStore' | 'storagePolicy'): Promise<T> {
  if (obj.metadata.deletionTimestamp === undefined || !(obj.metadata.finalizers ?? []).includes(IN_USE_FINALIZER)) return obj
  let token: string | undefined
  do {
    const page = (await ctx.kube.read(`list volumes`, () =>
      ctx.kube.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL.Volume, limit: 500, _continue: token }),
    )) as { items: VolumeObject[]; metadata?: { continue?: string } }
    if (page.items.some((v) => v.spec?.[field] === obj.metadata.name)) return obj
    token = page.metadata?.continue
  } while (token !== undefined && token !== '')
  return ensureFinalizer(ctx.kube, kind, obj, IN_USE_FINALIZER, false)
}
