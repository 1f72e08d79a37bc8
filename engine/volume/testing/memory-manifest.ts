/**
 * A deliberately simple ManifestStore for engine tests: the whole map is one
 * DAG-CBOR page (sorted [index, CID] pairs) stored in the chunk store, so roots
 * are immutable and content-addressed like the real Merkle map, without its
 * paging. Test infrastructure only.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import type { ChunkStore, ManifestStore } from '../../contracts.js'

type Page = [number, CID][]

export class MemoryManifestStore implements ManifestStore {
  private readonly decoded = new Map<string, Map<number, CID>>()
  /** Roots written, for tests that count manifest updates. */
  updates = 0

  constructor(private readonly chunks: ChunkStore) {}

  async lookup(root: CID | null, indexes: readonly number[]): Promise<(CID | undefined)[]> {
    const map = await this.load(root)
    return indexes.map((i) => map.get(i))
  }

  async update(root: CID | null, changes: ReadonlyMap<number, CID | null>): Promise<CID | null> {
    const map = new Map(await this.load(root))
    for (const [index, cid] of changes) {
      if (cid === null) map.delete(index)
      else map.set(index, cid)
    }
    if (map.size === 0) return null
    const page: Page = [...map.entries()].sort((a, b) => a[0] - b[0])
    const [cid] = await this.chunks.putChunks([dagCbor.encode(page)], 'dag-cbor')
    this.updates++
    this.decoded.set((cid as CID).toString(), map)
    return cid as CID
  }

  async *entries(root: CID | null, fromIndex: number, toIndex: number): AsyncIterable<[number, CID]> {
    const map = await this.load(root)
    const sorted = [...map.entries()].filter(([i]) => i >= fromIndex && i < toIndex).sort((a, b) => a[0] - b[0])
    yield* sorted
  }

  async *pages(root: CID | null): AsyncIterable<CID> {
    if (root !== null) yield root
  }

  private async load(root: CID | null): Promise<Map<number, CID>> {
    if (root === null) return new Map()
    const key = root.toString()
    const cached = this.decoded.get(key)
    if (cached !== undefined) return cached
    const [bytes] = await this.chunks.getChunks([root])
    const map = new Map(dagCbor.decode<Page>(bytes as Uint8Array))
    this.decoded.set(key, map)
    return map
  }
}
