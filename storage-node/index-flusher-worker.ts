/**
 * The index worker: a second connection to the store's index that runs the write-behind
 * flushes off the event-loop thread. It only ever indexes records whose bytes are
 * already fsynced (see docs/adr/0003-shard-store.md, "2026-11-23"); the store's own
 * connection keeps every other write.
 */
import { workerData, type MessagePort } from 'node:worker_threads'
import { SegmentIndex, unpackRecords } from './segment-index.js'
import type { FlushReply, FlushRequest, IndexWorkerData } from './index-flusher.js'

const { indexPath, port, done } = workerData as IndexWorkerData & { port: MessagePort }

let index: SegmentIndex | undefined
try {
  index = new SegmentIndex(indexPath, { lockFile: false, addressMap: false })
  port.postMessage({ seq: 0, ok: true, replaced: { count: 0, bytes: 0, corrupt: 0 } } satisfies FlushReply)
} catch (err) {
  port.postMessage({ seq: 0, ok: false, errorName: (err as Error).name, errorMessage: (err as Error).message } satisfies FlushReply)
}
signal(0)

port.on('message', (request: FlushRequest | 'close') => {
  if (request === 'close') {
    index?.close()
    port.close()
    return
  }
  let reply: FlushReply
  try {
    if (index === undefined) throw new Error('the index worker could not open the index')
    const replaced = index.commitWrites(request.segmentId, request.sizeBytes, unpackRecords(request.records))
    reply = { seq: request.seq, ok: true, replaced }
  } catch (err) {
    reply = { seq: request.seq, ok: false, errorName: (err as Error).name, errorMessage: (err as Error).message }
  }
  // The reply is queued before the signal, so a store that wakes on the signal can take it synchronously.
  port.postMessage(reply)
  signal(request.seq)
})

function signal(seq: number): void {
  Atomics.store(done, 0, seq)
  Atomics.notify(done, 0)
}
