/**
 * The engine's memory accounting: every structure that holds volume data, with the
 * bound that caps it and how many copies of a byte it holds at once. Each term is a
 * bound a component enforces (a budget that makes callers wait), never an estimate of
 * typical use; the sum with the process baseline is what one engine can reach,
 * "whatever the volume size". The test beside this file keeps the defaults under
 * 464 MiB (the 512 MiB with a margin for allocator slack), and
 * engine.memory.test.ts checks the live bytes of a real engine under a burst of writes
 * against this sum. Why each bound: docs/adr/0008-volume-engine.md.
 */
import { CHUNK_STORE_MEMORY_DEFAULTS } from '../chunks/chunk-store.js'
import { MANIFEST_PAGE_CACHE_DEFAULT_BYTES } from '../chunks/manifest.js'
import { JOURNAL_MEMORY_DEFAULTS } from '../journal/replicated-journal.js'
import { NBD_MEMORY_DEFAULTS } from '../nbd/server.js'
import { VOLUME_MEMORY_DEFAULTS } from '../volume/options.js'

const MiB = 1024 * 1024

/** What one engine process is configured with; unset fields take the components' defaults. */
export interface EngineMemoryInput {
  /** Volumes attached at once. */
  volumes: number
  dataShards: number
  parityShards: number
  chunkSizeBytes?: number
  /** @default VOLUME_MEMORY_DEFAULTS.dirtyBytesMax */
  dirtyBytesMax?: number
  /** @default VOLUME_MEMORY_DEFAULTS.flushBatchChunks */
  flushBatchChunks?: number
  /** @default VOLUME_MEMORY_DEFAULTS.flushBatchesInFlight */
  flushBatchesInFlight?: number
  /** @default VOLUME_MEMORY_DEFAULTS.lookupCacheEntries */
  lookupCacheEntries?: number
  /** @default JOURNAL_MEMORY_DEFAULTS.retainedBytesMax */
  journalRetainedBytesMax?: number
  /** @default JOURNAL_MEMORY_DEFAULTS.windowBytes */
  journalWindowBytes?: number
  /** @default JOURNAL_MEMORY_DEFAULTS.messageBytesMax */
  journalMessageBytesMax?: number
  /** Journal replicas per volume (the policy's journalReplicas, m+1 by default). @default parityShards + 1 */
  journalReplicas?: number
  /** @default CHUNK_STORE_MEMORY_DEFAULTS.inFlightPutBytesMax */
  inFlightPutBytesMax?: number
  /** @default CHUNK_STORE_MEMORY_DEFAULTS.cacheMaxBytes */
  cacheMaxBytes?: number
  /** @default MANIFEST_PAGE_CACHE_DEFAULT_BYTES */
  pageCacheMaxBytes?: number
  /** NBD request bytes one connection may hold in flight. @default NBD_MEMORY_DEFAULTS.maxInFlightBytes */
  nbdInFlightBytes?: number
  /** NBD connections open at once (the bound is per connection). @default 1 per volume */
  nbdConnections?: number
  /** Process baseline. @default ENGINE_BASELINE_BYTES */
  baselineBytes?: number
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

/** What the accounting test holds the defaults to: 512 MiB less room for allocator slack (freed memory not yet returned). */
export const ENGINE_DEFAULT_BUDGET_BYTES = 464 * MiB

/**
 * Memory one cached lookup (index → CID) holds once its manifest page has left the page
 * cache: the decoded CID with its digest, views and buffer, plus the map entry. Measured
 * with a forced GC over 32768 entries of decoded pages (Node 20): 700 bytes; rounded up.
 * (An earlier heap-snapshot figure of ~170 missed the CID's buffers.)
 */
const LOOKUP_ENTRY_BYTES = 768

/** The bound of every data-holding structure; `totalBytes` includes the baseline. */
export function engineMemoryBudget(input: EngineMemoryInput): { items: MemoryItem[]; totalBytes: number } {
  const k = input.dataShards
  const codeRate = (input.dataShards + input.parityShards) / k
  const chunk = input.chunkSizeBytes ?? 64 * 1024
  const replicas = input.journalReplicas ?? input.parityShards + 1
  const window = input.journalWindowBytes ?? JOURNAL_MEMORY_DEFAULTS.windowBytes
  const message = input.journalMessageBytesMax ?? JOURNAL_MEMORY_DEFAULTS.messageBytesMax
  const batchBytes = (input.flushBatchChunks ?? VOLUME_MEMORY_DEFAULTS.flushBatchChunks) * chunk
  const batches = input.flushBatchesInFlight ?? VOLUME_MEMORY_DEFAULTS.flushBatchesInFlight
  const putBytes = input.inFlightPutBytesMax ?? CHUNK_STORE_MEMORY_DEFAULTS.inFlightPutBytesMax
  const perVolume: MemoryItem[] = [
    { name: 'dirty map', bytes: input.dirtyBytesMax ?? VOLUME_MEMORY_DEFAULTS.dirtyBytesMax },
    { name: 'journal retained records', bytes: input.journalRetainedBytesMax ?? JOURNAL_MEMORY_DEFAULTS.retainedBytesMax },
    // Each replica's stream serializes its own copy of a message, and grpc-js copies that into
    // a length-prefixed frame; the send window (records not yet durable everywhere) bounds
    // what any replica has outstanding, plus one message.
    { name: 'journal messages in gRPC buffers (per replica, serialized + framed)', bytes: replicas * 2 * (window + message) },
    // Partial entries are composed into new buffers over a copy of the old chunk.
    { name: 'flusher composed chunks and read bases', bytes: 2 * batches * batchBytes },
    { name: 'manifest lookup cache', bytes: (input.lookupCacheEntries ?? VOLUME_MEMORY_DEFAULTS.lookupCacheEntries) * LOOKUP_ENTRY_BYTES },
    { name: 'NBD requests in flight', bytes: (input.nbdConnections ?? 1) * (input.nbdInFlightBytes ?? NBD_MEMORY_DEFAULTS.maxInFlightBytes) },
  ].map((item) => ({ name: item.name, bytes: item.bytes * input.volumes }))
  const items: MemoryItem[] = [
    { name: 'process baseline', bytes: input.baselineBytes ?? ENGINE_BASELINE_BYTES },
    ...perVolume,
    // A put wave is packed into one buffer for the codec worker (1), which returns k+m shards
    // of chunk/k bytes (rate); each is framed with its header (rate), serialized into a put
    // batch (rate) and copied by grpc-js into a length-prefixed frame (rate).
    { name: 'chunk puts in flight (packed, shards, framed, serialized, gRPC frame)', bytes: Math.ceil(putBytes * (1 + 4 * codeRate)) },
    { name: 'chunk cache', bytes: input.cacheMaxBytes ?? CHUNK_STORE_MEMORY_DEFAULTS.cacheMaxBytes },
    { name: 'manifest page cache', bytes: input.pageCacheMaxBytes ?? MANIFEST_PAGE_CACHE_DEFAULT_BYTES },
  ]
  return { items, totalBytes: items.reduce((sum, item) => sum + item.bytes, 0) }
}
