/**
 * The engine's memory accounting: every structure that holds volume data, with the
 * bound that caps it. The sum with the defaults plus the process baseline must stay
 * under the 512 MiB the issue sets for an engine "whatever the volume size"; the test
 * beside this file checks that, and engine.real.test.ts checks that the components
 * honour their bounds under load. Why each bound: docs/adr/0008-volume-engine.md.
 */
import { CHUNK_STORE_MEMORY_DEFAULTS } from '../chunks/chunk-store.js'
import { MANIFEST_PAGE_CACHE_DEFAULT_BYTES } from '../chunks/manifest.js'
import { JOURNAL_MEMORY_DEFAULTS } from '../journal/replicated-journal.js'
import { DEFAULT_DIRTY_BYTES_MAX } from '../volume/options.js'

const MiB = 1024 * 1024

/** What one engine process is configured with; unset fields take the components' defaults. */
export interface EngineMemoryInput {
  /** Volumes attached at once. */
  volumes: number
  dataShards: number
  parityShards: number
  /** @default DEFAULT_DIRTY_BYTES_MAX */
  dirtyBytesMax?: number
  /** @default JOURNAL_MEMORY_DEFAULTS.retainedBytesMax */
  journalRetainedBytesMax?: number
  /** @default CHUNK_STORE_MEMORY_DEFAULTS.inFlightPutBytesMax */
  inFlightPutBytesMax?: number
  /** @default CHUNK_STORE_MEMORY_DEFAULTS.cacheMaxBytes */
  cacheMaxBytes?: number
  /** @default MANIFEST_PAGE_CACHE_DEFAULT_BYTES */
  pageCacheMaxBytes?: number
  /** The NBD server's bytes of requests in flight (engine/nbd). @default 64 MiB */
  nbdInFlightBytes?: number
  /**
   * Chunk bytes the flusher composes at once (batches in flight × batch chunks × chunk
   * size); complete entries are not copied, so this is an upper bound. @default 16 MiB
   */
  flushComposeBytes?: number
}

export interface MemoryItem {
  name: string
  bytes: number
}

/**
 * Resident memory of an idle engine process (V8 heap, code, gRPC, the codec worker),
 * measured as VmRSS of `cairn engine` serving one volume before any I/O: 92–94 MiB.
 */
export const ENGINE_BASELINE_BYTES = 96 * MiB

/** The bound of every data-holding structure; `totalBytes` includes the baseline. */
export function engineMemoryBudget(input: EngineMemoryInput): { items: MemoryItem[]; totalBytes: number } {
  const putBytes = input.inFlightPutBytesMax ?? CHUNK_STORE_MEMORY_DEFAULTS.inFlightPutBytesMax
  // A put wave is packed into one buffer for the codec worker, which returns k+m shards of
  // chunk/k bytes each: 1 + (k+m)/k bytes per chunk byte while it is in flight.
  const putFactor = 1 + (input.dataShards + input.parityShards) / input.dataShards
  const perVolume = [
    { name: 'dirty map', bytes: input.dirtyBytesMax ?? DEFAULT_DIRTY_BYTES_MAX },
    { name: 'journal retained records', bytes: input.journalRetainedBytesMax ?? JOURNAL_MEMORY_DEFAULTS.retainedBytesMax },
    { name: 'flusher composed chunks', bytes: input.flushComposeBytes ?? 16 * MiB },
  ].map((item) => ({ name: item.name, bytes: item.bytes * input.volumes }))
  const items: MemoryItem[] = [
    { name: 'process baseline', bytes: ENGINE_BASELINE_BYTES },
    ...perVolume,
    { name: 'chunk puts in flight (packed + shards)', bytes: Math.ceil(putBytes * putFactor) },
    { name: 'chunk cache', bytes: input.cacheMaxBytes ?? CHUNK_STORE_MEMORY_DEFAULTS.cacheMaxBytes },
    { name: 'manifest page cache', bytes: input.pageCacheMaxBytes ?? MANIFEST_PAGE_CACHE_DEFAULT_BYTES },
    { name: 'NBD requests in flight', bytes: input.nbdInFlightBytes ?? 64 * MiB },
  ]
  return { items, totalBytes: items.reduce((sum, item) => sum + item.bytes, 0) }
}
