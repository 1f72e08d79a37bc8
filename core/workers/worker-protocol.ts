/**
 * Messages between the pool and its workers, and the worker side of the loop.
 * The entry file (codec-worker.ts) only calls serveCodecJobs(); tests wrap it to
 * inject faults.
 */
import type { MessagePort } from 'node:worker_threads'
import { createCodecJobRunner, transferables, type CodecJob, type CodecJobResult, type EncodedChunk } from './codec-jobs.js'
import { serializeError, type SerializedError } from './errors.js'
import type { KernelName } from '../erasure/kernel.js'

export interface WorkerInit {
  kernel: KernelName
}

export type ToWorker = { id: number; job: CodecJob }
export type FromWorker =
  | { type: 'ready' }
  | { type: 'init-error'; error: SerializedError }
  | { type: 'result'; id: number; result: CodecJobResult }
  | { type: 'error'; id: number; error: SerializedError }

/** The buffers of a result, handed over without copying. */
export function resultTransferables(result: CodecJobResult): ArrayBuffer[] {
  const views: Uint8Array[] = []
  for (const r of result) {
    if (r instanceof Uint8Array) views.push(r)
    else views.push(...(r as EncodedChunk).shards, (r as EncodedChunk).cid)
  }
  return transferables(views)
}

/** Worker side: load the kernel and hashers, say ready, then run jobs one message at a time. */
export async function serveCodecJobs(port: MessagePort, init: WorkerInit, beforeJob?: (job: CodecJob) => void): Promise<void> {
  let runner
  try {
    runner = await createCodecJobRunner(init.kernel)
  } catch (err) {
    port.postMessage({ type: 'init-error', error: serializeError(err) } satisfies FromWorker)
    return
  }
  port.on('message', (message: ToWorker) => {
    try {
      beforeJob?.(message.job)
      const result = runner.run(message.job)
      port.postMessage({ type: 'result', id: message.id, result } satisfies FromWorker, resultTransferables(result))
    } catch (err) {
      port.postMessage({ type: 'error', id: message.id, error: serializeError(err) } satisfies FromWorker)
    }
  })
  port.postMessage({ type: 'ready' } satisfies FromWorker)
}
