/**
 * Compaction: copies the live, verified records of a mostly-dead sealed segment
 * into a new segment, fsyncs it, swaps the index over in one durable transaction,
 * then unlinks the old file. A crash at any point leaves either the old segment
 * indexed (the copy is discarded on recovery) or the new one (the old file is an
 * orphan and is removed on recovery).
 */
import { unlink } from 'node:fs/promises'
import { decodeShard, ShardCorruptError } from '../core/shard.js'
import { ShuttingDownError } from '../core/errors.js'
import { asBuffer, type SegmentRow, type ShardRow } from './segment-index.js'
import { SegmentFile, syncDirectory } from './segment-file.js'
import type { SegmentShardStore } from './segment-store.js'

/** Bytes copied per write while compacting, so one pass never holds a whole segment in memory. */
const COPY_BUFFER_BYTES = 4 * 1024 * 1024

/** The sealed segment with the lowest live ratio under `liveRatio`, if any. */
export function pickCompactionCandidate(segments: readonly SegmentRow[], liveRatio: number): SegmentRow | undefined {
  let best: SegmentRow | undefined
  for (const s of segments) {
    if (s.state !== 'sealed' || s.sizeBytes === 0) continue
    const ratio = s.liveBytes / s.sizeBytes
    if (ratio >= liveRatio) continue
    if (best === undefined || ratio < best.liveBytes / best.sizeBytes) best = s
  }
  return best
}

export async function compactSegment(store: SegmentShardStore, source: SegmentRow): Promise<void> {
  const { metrics, logger } = store.components
  const sourceFile = store.segments.get(source.id)
  if (sourceFile === undefined) return
  metrics?.compactionRunning.set(1)
  const targetId = store.allocateSegmentId()
  store.index.addSegment(targetId, 'compacting')
  const target = await SegmentFile.open(store.segmentsDir, targetId, true)
  try {
    await syncDirectory(store.segmentsDir)
    const { moved, dropped, sizeBytes } = await copyLiveRecords(store, sourceFile, target)
    await target.handle.datasync()
    const removed = store.index.finishCompaction(source.id, targetId, sizeBytes, moved, dropped)
    store.segments.set(targetId, target)
    store.segments.delete(source.id)
    // Same turn as the swap: no read can use a cached location in the old segment.
    store.forgetLocations()
    await sourceFile.retire()
    await unlink(sourceFile.path)
    await syncDirectory(store.segmentsDir)
    for (const row of removed) {
      store.counts.shards -= 1
      store.counts.bytes -= row.length
      if (row.corrupt) store.counts.corrupt -= 1
    }
    const reclaimed = source.sizeBytes - sizeBytes
    metrics?.compactionReclaimedBytes.inc(Math.max(0, reclaimed))
    metrics?.compactionSegments.inc()
    logger.info({ segment: source.id, into: targetId, reclaimedBytes: reclaimed, dropped: dropped.length }, 'compacted segment')
  } catch (err) {
    await target.retire()
    await unlink(target.path).catch(() => undefined)
    if (!store.stopping) store.index.removeSegment(targetId)
    throw err
  } finally {
    metrics?.compactionRunning.set(0)
  }
}

interface CopyResult {
  moved: Array<{ row: ShardRow; newOffset: number }>
  /** Rows whose stored copy failed verification: not copied, their index rows go. */
  dropped: ShardRow[]
  sizeBytes: number
}

async function copyLiveRecords(store: SegmentShardStore, source: SegmentFile, target: SegmentFile): Promise<CopyResult> {
  const result: CopyResult = { moved: [], dropped: [], sizeBytes: 0 }
  let buffered: Buffer[] = []
  let bufferedBytes = 0
  const flush = async (): Promise<void> => {
    if (bufferedBytes === 0) return
    const { bytesWritten } = await target.handle.writev(buffered, result.sizeBytes)
    if (bytesWritten !== bufferedBytes) throw new Error(`short write while compacting into segment ${target.id}`)
    result.sizeBytes += bufferedBytes
    buffered = []
    bufferedBytes = 0
  }
  for (const row of store.index.liveRows(source.id)) {
    // Stop promptly on shutdown; the unfinished copy is discarded, the source stays indexed.
    if (store.stopping) throw new ShuttingDownError('compaction interrupted by shutdown')
    const bytes = await source.read(row.offset, row.length)
    if (!recordIsIntact(row, bytes)) {
      store.recordCorrupt(row, new ShardCorruptError('failed verification during compaction'), false)
      result.dropped.push(row)
      continue
    }
    result.moved.push({ row, newOffset: result.sizeBytes + bufferedBytes })
    buffered.push(bytes)
    bufferedBytes += bytes.length
    if (bufferedBytes >= COPY_BUFFER_BYTES || buffered.length >= 512) await flush()
  }
  await flush()
  return result
}

function recordIsIntact(row: ShardRow, bytes: Buffer): boolean {
  try {
    if (bytes.length !== row.length) return false
    const shard = decodeShard(bytes)
    return shard.header.index === row.idx && asBuffer(shard.header.chunkCid).equals(row.cid)
  } catch {
    return false
  }
}
