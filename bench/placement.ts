/**
 * Placement throughput: chunk placements per second over a cluster map, the
 * cost the flusher, the reader and the rebalancer pay per chunk. Also the
 * cost of the alternative that was rejected (node:crypto per member score).
 */
import { createHash } from 'node:crypto'
import type { BenchResult, BenchSuite } from './report.js'
import type { ClusterMap } from '../core/cluster-map.js'
import { createPlacer } from '../core/placement.js'

interface Shape {
  name: string
  members: number
  domains: number
  shards: number
}

const SHAPES: readonly Shape[] = [
  { name: '4+2/12m/12d', members: 12, domains: 12, shards: 6 },
  { name: '4+2/12m/8d', members: 12, domains: 8, shards: 6 },
  { name: '8+3/48m/24d', members: 48, domains: 24, shards: 11 },
]

function mapFor(shape: Shape): ClusterMap {
  return {
    epoch: 1,
    members: Array.from({ length: shape.members }, (_, i) => ({
      id: `storage-node-${i}`,
      address: `10.0.${i}.1:7400`,
      peerId: `peer-${i}`,
      failureDomain: `zone-${i % shape.domains}`,
      weight: 1 + (i % 4),
      state: 'active' as const,
    })),
  }
}

function cids(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const cid = new Uint8Array(36)
    cid.set([0x01, 0x55, 0x12, 0x20])
    cid.set(createHash('sha256').update(String(i)).digest(), 4)
    return cid
  })
}

/**
 * Nanoseconds per iteration of a trivial integer loop: on a shared or
 * throttled machine every number above scales with it, so a reader can tell
 * a slow placement from a slow CPU.
 */
function calibrationNsPerIteration(): number {
  let acc = 0
  const iterations = 20_000_000
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) acc = (acc + Math.imul(i, 0x9e3779b1)) | 0
  const ns = Number(process.hrtime.bigint() - start) / iterations
  return acc === 0.5 ? -1 : ns // uses acc so the loop cannot be removed
}

export const placementSuite: BenchSuite = async function* ({ scale }) {
  yield { name: 'placement.calibration.imul-loop', value: calibrationNsPerIteration(), unit: 'ns/iter', settings: {} }
  const chunks = cids(Math.max(1000, Math.round(200_000 * scale)))
  for (const shape of SHAPES) {
    const placer = createPlacer(mapFor(shape))
    for (let i = 0; i < 20_000; i++) placer.place(chunks[i % chunks.length] as Uint8Array, shape.shards)
    const start = process.hrtime.bigint()
    for (const cid of chunks) placer.place(cid, shape.shards)
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    const result: BenchResult = {
      name: `placement.place.${shape.name}`,
      value: chunks.length / seconds,
      unit: 'chunks/s',
      settings: { members: shape.members, domains: shape.domains, shards: shape.shards, chunks: chunks.length },
    }
    yield result
  }
  // The rejected alternative: one node:crypto digest per (chunk, member) score.
  const ids = Array.from({ length: 12 }, (_, i) => `storage-node-${i}`)
  const count = Math.max(1000, Math.round(20_000 * scale))
  const start = process.hrtime.bigint()
  for (let c = 0; c < count; c++) {
    for (const id of ids) createHash('sha256').update(chunks[c % chunks.length] as Uint8Array).update(id).digest()
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  yield { name: 'placement.crypto-sha256-scores.12m', value: count / seconds, unit: 'chunks/s', settings: { members: 12, slots: 1 } }
}
