/**
 * Test-only worker entry: the real codec worker, except that an encode job whose
 * first chunk is exactly DE AD 00 kills the thread, as an out-of-memory or a
 * native crash would.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { serveCodecJobs, type WorkerInit } from './worker-protocol.js'
import { assert } from '../errors.js'

assert(parentPort !== null, 'must run as a worker thread')
await serveCodecJobs(parentPort, workerData as WorkerInit, (job) => {
  const first = job.kind === 'encode' ? job.chunks[0] : undefined
  if (first !== undefined && first.length === 3 && first[0] === 0xde && first[1] === 0xad && first[2] === 0) process.exit(7)
})
