/**
 * Test support: storage nodes as in-process gRPC servers over temp dirs, a
 * cluster map over them, and a node-client pool that counts requests so tests
 * can check batching and coalescing. Test infrastructure only.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import type { ClusterMap, ClusterMember } from '../../core/cluster-map.js'
import { silentLogger } from '../../core/logger.js'
import { StorageNode } from '../../storage-node/daemon.js'
import { loopbackNodeInit } from '../../storage-node/fixtures.js'
import { createNodeClientPool, type NodeClientPool, type NodeClientPoolInit, type ShardNodeClient } from './node-clients.js'

export interface TestNode {
  id: string
  dir: string
  node: StorageNode
  address: string
  running: boolean
}

export interface TestCluster {
  nodes: TestNode[]
  map: ClusterMap
  /** Stops a node (its address then refuses connections). */
  stopNode(i: number): Promise<void>
  close(): Promise<void>
}

/** Starts `count` storage nodes on loopback, each its own failure domain. */
export async function startTestCluster(count: number): Promise<TestCluster> {
  const nodes: TestNode[] = []
  for (let i = 0; i < count; i++) {
    const dir = await mkdtemp(join(tmpdir(), `cairn-chunks-${i}-`))
    const node = new StorageNode(
      loopbackNodeInit(dir, {
        segmentSizeBytes: 8 * 1024 * 1024,
        maxBatchShards: 1024,
        maxBatchBytes: 32 * 1024 * 1024,
        maxShardBytes: 4 * 1024 * 1024,
        maxInFlightRequests: 256,
        pendingMaxBytes: 64 * 1024 * 1024,
      }),
      { logger: silentLogger(), registry: new Registry() },
    )
    await node.start()
    nodes.push({ id: `node-${i}`, dir, node, address: node.grpcAddress(), running: true })
  }
  const members: ClusterMember[] = nodes.map((n, i) => ({ id: n.id, address: n.address, peerId: `peer-${i}`, failureDomain: `zone-${i}`, weight: 1, state: 'active' }))
  const stopNode = async (i: number): Promise<void> => {
    const n = nodes[i] as TestNode
    if (!n.running) return
    n.running = false
    await n.node.stop()
  }
  return {
    nodes,
    map: { epoch: 1, members },
    stopNode,
    close: async () => {
      for (let i = 0; i < nodes.length; i++) await stopNode(i)
      for (const n of nodes) await rm(n.dir, { recursive: true, force: true })
    },
  }
}

/** Requests sent, by method and member address. */
export interface RequestCounts {
  getShards: Map<string, number>
  putShards: Map<string, number>
  hasShards: Map<string, number>
}

/**
 * A real client pool that counts every request it sends. `hold()` keeps GetShards
 * requests from being sent (they are counted) until `release()`, so a test can keep
 * fetches in flight for as long as it needs.
 */
export function countingClientPool(init: NodeClientPoolInit): { pool: NodeClientPool; counts: RequestCounts; reset(): void; hold(): void; release(): void } {
  const inner = createNodeClientPool(init)
  let held: { gate: Promise<void>; open: () => void } | undefined
  const counts: RequestCounts = { getShards: new Map(), putShards: new Map(), hasShards: new Map() }
  const bump = (m: Map<string, number>, key: string): void => {
    m.set(key, (m.get(key) ?? 0) + 1)
  }
  const pool: NodeClientPool = {
    requestDeadlineMs: inner.requestDeadlineMs,
    batchShardsMax: inner.batchShardsMax,
    batchBytesMax: inner.batchBytesMax,
    start: () => inner.start(),
    stop: () => inner.stop(),
    client(member: ClusterMember): ShardNodeClient {
      const c = inner.client(member)
      return {
        getShards: (a) => {
          bump(counts.getShards, member.address)
          return held === undefined ? c.getShards(a) : held.gate.then(() => c.getShards(a))
        },
        putShards: (s) => (bump(counts.putShards, member.address), c.putShards(s)),
        hasShards: (a) => (bump(counts.hasShards, member.address), c.hasShards(a)),
      }
    },
  }
  return {
    pool,
    counts,
    hold: () => {
      if (held !== undefined) return
      let open = (): void => {}
      const gate = new Promise<void>((resolve) => (open = resolve))
      held = { gate, open }
    },
    release: () => {
      held?.open()
      held = undefined
    },
    reset: () => {
      counts.getShards.clear()
      counts.putShards.clear()
      counts.hasShards.clear()
    },
  }
}

/** Sum of a count map. */
export function total(m: Map<string, number>): number {
  let n = 0
  for (const v of m.values()) n += v
  return n
}
