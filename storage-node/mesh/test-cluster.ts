/**
 * In-process storage meshes for tests (this folder's and the durability
 * services'): real libp2p over loopback TCP, real segment stores in temp dirs,
 * and a cluster map the test can change.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import type { ClusterMap, ClusterMapProvider, ClusterMember } from '../../core/cluster-map.js'
import { silentLogger } from '../../core/logger.js'
import { createSegmentShardStore, type SegmentShardStore } from '../segment-store.js'
import { StorageMesh, type StorageMeshInit } from './storage-mesh.js'

/** A map provider whose map the test replaces; every replacement bumps the epoch. */
export class MutableClusterMaps implements ClusterMapProvider {
  private map: ClusterMap = { epoch: 0, members: [] }

  current(): ClusterMap {
    return this.map
  }

  set(members: readonly ClusterMember[]): void {
    this.map = { epoch: this.map.epoch + 1, members }
  }
}

export interface TestMeshNode {
  id: string
  dir: string
  maps: MutableClusterMaps
  registry: Registry
  store: SegmentShardStore
  mesh: StorageMesh
  /** This node's entry as other members' maps list it. */
  member(): ClusterMember
}

/** Starts a store and a mesh for member `id` in a new temp dir (or `dir`), with an empty map. */
export async function startTestMeshNode(id: string, init: Partial<StorageMeshInit> = {}, dir?: string): Promise<TestMeshNode> {
  const dataDir = dir ?? (await mkdtemp(join(tmpdir(), `cairn-mesh-${id}-`)))
  const store = createSegmentShardStore({ dataDir, compactionIntervalMs: 0, segmentSizeBytes: 4 * 1024 * 1024 }, { logger: silentLogger() })
  await store.start()
  const maps = new MutableClusterMaps()
  const registry = new Registry()
  const mesh = new StorageMesh(
    { dataDir, listen: '127.0.0.1:0', heartbeatIntervalMs: 100, aliveWindowMs: 3000, callTimeoutMs: 10_000, ...init },
    { memberId: id, maps, store, logger: silentLogger(), registry },
  )
  try {
    await mesh.start()
  } catch (err) {
    await store.stop()
    throw err
  }
  const node: TestMeshNode = {
    id,
    dir: dataDir,
    maps,
    registry,
    store,
    mesh,
    member: () => ({
      id,
      address: '127.0.0.1:1',
      peerId: mesh.peerId(),
      meshAddress: mesh.listenAddress(),
      failureDomain: `domain-${id}`,
      weight: 1,
      state: 'active',
    }),
  }
  return node
}

/** Starts `ids.length` nodes and gives every node the map of all of them. */
export async function startTestMeshCluster(ids: readonly string[], init: Partial<StorageMeshInit> = {}): Promise<TestMeshNode[]> {
  const nodes: TestMeshNode[] = []
  try {
    for (const id of ids) nodes.push(await startTestMeshNode(id, init))
  } catch (err) {
    await stopTestMeshNodes(nodes)
    throw err
  }
  const members = nodes.map((n) => n.member())
  for (const n of nodes) n.maps.set(members)
  return nodes
}

/** Stops meshes and stores (idempotent) and, unless `keepDirs`, deletes their dirs. */
export async function stopTestMeshNodes(nodes: readonly TestMeshNode[], keepDirs = false): Promise<void> {
  await Promise.allSettled(nodes.map((n) => n.mesh.stop()))
  await Promise.allSettled(nodes.map((n) => n.store.stop()))
  if (!keepDirs) await Promise.allSettled(nodes.map((n) => rm(n.dir, { recursive: true, force: true })))
}

/** Polls `condition` until it holds or `timeoutMs` passes. @throws Error naming `what` on timeout */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A metric's value with these labels (0 when never set); a histogram's `_count` or `_sum` by its full name. */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const base = name.replace(/_(count|sum)$/, '')
  const metric = registry.getSingleMetric(name) ?? registry.getSingleMetric(base)
  if (metric === undefined) throw new Error(`no metric ${name}`)
  const { values } = await metric.get()
  const match = values.find((v) => {
    const metricName = (v as { metricName?: string }).metricName
    return (metricName === undefined || metricName === name) && Object.entries(labels).every(([k, val]) => v.labels[k] === val)
  })
  return match?.value ?? 0
}
