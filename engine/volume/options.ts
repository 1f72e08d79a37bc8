/** Tunables of one volume engine, validated once at attach. */
import { InvalidArgumentError } from '../../core/errors.js'

export interface VolumeEngineOptions {
  /**
   * Most bytes the dirty map may hold (both generations). Writes beyond it wait
   * for the flusher. A single request larger than the bound is admitted alone.
   * @default 67108864 (64 MiB)
   */
  dirtyBytesMax?: number
  /**
   * Dirty bytes at which the flusher starts at once instead of waiting for the interval.
   * @default dirtyBytesMax / 4
   */
  flushThresholdBytes?: number
  /**
   * Longest time a change waits in the dirty map before a flush starts.
   * @default 5000
   */
  flushIntervalMs?: number
  /**
   * Chunks read, merged and put together in one flusher step; bounds the memory a flush adds.
   * @default 64
   */
  flushBatchChunks?: number
  /**
   * Flusher batches in flight at once; memory a flush adds is about this many batches of chunks.
   * @default 4
   */
  flushBatchesInFlight?: number
  /**
   * Consecutive failed flushes before the engine reports itself failed and refuses writes.
   * @default 5
   */
  flushRetriesMax?: number
  /**
   * First retry delay after a failed flush; doubles per failure.
   * @default 200
   */
  flushBackoffBaseMs?: number
  /**
   * Longest retry delay.
   * @default 10000
   */
  flushBackoffMaxMs?: number
  /**
   * Manifest lookups (chunk index → CID) cached for the current root.
   * @default 16384 (about 12 MiB: ~770 bytes an entry once its page is evicted)
   */
  lookupCacheEntries?: number
  /**
   * Compare-and-swap retries for the volume head and for acquiring the epoch.
   * @default 8
   */
  casRetriesMax?: number
}

export type ResolvedVolumeEngineOptions = Required<VolumeEngineOptions>

/**
 * Defaults of the volume engine's memory bounds; with the other components' they keep an
 * engine under 464 MiB (engine/host/memory-budget.ts, ADR 0008 2026-11-23). The dirty map and the
 * journal window are not smaller because the flush threshold (a quarter of the dirty map) and a
 * window below what qd8 × 1 MiB writes keep in flight cost 4-15× in the NBD benchmark.
 */
export const VOLUME_MEMORY_DEFAULTS = { dirtyBytesMax: 64 * 1024 * 1024, flushBatchChunks: 64, flushBatchesInFlight: 4, lookupCacheEntries: 16384 } as const

/** The dirty map's default bound. */
export const DEFAULT_DIRTY_BYTES_MAX = VOLUME_MEMORY_DEFAULTS.dirtyBytesMax

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`${name}: must be a positive integer, got ${v}`)
  return v
}

/** Applies defaults and checks bounds; `chunkSizeBytes` is the policy's. */
export function resolveOptions(options: VolumeEngineOptions, chunkSizeBytes: number): ResolvedVolumeEngineOptions {
  const dirtyBytesMax = positiveInt('dirtyBytesMax', options.dirtyBytesMax, DEFAULT_DIRTY_BYTES_MAX)
  // Two chunks: one being flushed and one taking writes, or the budget could never admit a write while flushing.
  if (dirtyBytesMax < 2 * chunkSizeBytes) {
    throw new InvalidArgumentError(`dirtyBytesMax: ${dirtyBytesMax} is below two chunks (${2 * chunkSizeBytes})`)
  }
  const flushThresholdBytes = positiveInt('flushThresholdBytes', options.flushThresholdBytes, Math.floor(dirtyBytesMax / 4))
  if (flushThresholdBytes > dirtyBytesMax) {
    throw new InvalidArgumentError(`flushThresholdBytes: ${flushThresholdBytes} exceeds dirtyBytesMax ${dirtyBytesMax}`)
  }
  const resolved: ResolvedVolumeEngineOptions = {
    dirtyBytesMax,
    flushThresholdBytes,
    flushIntervalMs: positiveInt('flushIntervalMs', options.flushIntervalMs, 5000),
    flushBatchChunks: positiveInt('flushBatchChunks', options.flushBatchChunks, VOLUME_MEMORY_DEFAULTS.flushBatchChunks),
    flushBatchesInFlight: positiveInt('flushBatchesInFlight', options.flushBatchesInFlight, VOLUME_MEMORY_DEFAULTS.flushBatchesInFlight),
    flushRetriesMax: positiveInt('flushRetriesMax', options.flushRetriesMax, 5),
    flushBackoffBaseMs: positiveInt('flushBackoffBaseMs', options.flushBackoffBaseMs, 200),
    flushBackoffMaxMs: positiveInt('flushBackoffMaxMs', options.flushBackoffMaxMs, 10_000),
    lookupCacheEntries: positiveInt('lookupCacheEntries', options.lookupCacheEntries, VOLUME_MEMORY_DEFAULTS.lookupCacheEntries),
    casRetriesMax: positiveInt('casRetriesMax', options.casRetriesMax, 8),
  }
  return resolved
}
