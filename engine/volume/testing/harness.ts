/**
 * Wiring for engine tests: an in-memory Local control plane, the in-memory chunk
 * store, manifest and journal replicas, shared by every engine a test attaches,
 * so a second engine sees what the first left behind. Test infrastructure only.
 */
import { Registry } from 'prom-client'
import { silentLogger } from '../../../core/logger.js'
import { createLocalControlPlane, type LocalControlPlane } from '../../../control-plane/local/local-control-plane.js'
import type { Volume, VolumeSource } from '../../../control-plane/types.js'
import { attachVolume } from '../attach.js'
import type { VolumeEngine } from '../engine.js'
import type { VolumeEngineOptions } from '../options.js'
import { MemoryChunkStore } from './memory-chunk-store.js'
import { MemoryJournalReplicas, type MemoryJournalOptions } from './memory-journal.js'
import { MemoryManifestStore } from './memory-manifest.js'

export const BLOCK_STORE = 'test-store'
export const POLICY = 'test-policy'

export interface EngineHarness {
  cp: LocalControlPlane
  chunks: MemoryChunkStore
  manifest: MemoryManifestStore
  journals: MemoryJournalReplicas
  registry: Registry
  chunkSizeBytes: number
  createVolume(name: string, sizeBytes: number, source?: VolumeSource): Promise<Volume>
  attach(volumeName: string, nodeId?: string, options?: VolumeEngineOptions): Promise<VolumeEngine>
  cleanup(): Promise<void>
}

export interface HarnessInit {
  /** @default 65536 */
  chunkSizeBytes?: number
  journal?: MemoryJournalOptions
}

export async function createEngineHarness(init: HarnessInit = {}): Promise<EngineHarness> {
  const chunkSizeBytes = init.chunkSizeBytes ?? 65536
  const cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
  await cp.start()
  await cp.createBlockStore({ name: BLOCK_STORE, hostPath: '/var/lib/cairn' })
  await cp.createStoragePolicy({ name: POLICY, dataShards: 1, parityShards: 0, chunkSizeBytes })
  const chunks = new MemoryChunkStore()
  const manifest = new MemoryManifestStore(chunks)
  const journals = new MemoryJournalReplicas(init.journal)
  const registry = new Registry()
  const engines: VolumeEngine[] = []
  return {
    cp,
    chunks,
    manifest,
    journals,
    registry,
    chunkSizeBytes,
    createVolume: (name, sizeBytes, source) =>
      cp.createVolume({ name, blockStore: BLOCK_STORE, storagePolicy: POLICY, sizeBytes, ...(source ? { source } : {}) }),
    attach: async (volumeName, nodeId = 'node-a', options = {}) => {
      const engine = await attachVolume(
        { volumeName, nodeId, options: { flushIntervalMs: 60_000, ...options } },
        { controlPlane: cp, chunkStore: chunks, manifest, journalFactory: journals.factory, logger: silentLogger(), registry },
      )
      engines.push(engine)
      return engine
    },
    cleanup: async () => {
      for (const e of engines) await e.stop().catch(() => undefined)
      await cp.stop()
    },
  }
}

/** Waits for `condition` with a bounded timeout, checking after each turn of the event loop. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}
