/** Entry of a codec worker thread (started by CodecPool). */
import { parentPort, workerData } from 'node:worker_threads'
import { serveCodecJobs, type WorkerInit } from './worker-protocol.js'
import { assert } from '../errors.js'

assert(parentPort !== null, 'codec-worker.js must run as a worker thread')
await serveCodecJobs(parentPort, workerData as WorkerInit)
