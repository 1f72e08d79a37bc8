/**
 * JournalService over gRPC: validates each request, converts wire objects at the
 * edge, calls the JournalStore, and maps errors through core/grpc.ts. Append
 * streams are acknowledged only after a group-commit fsync covers their records,
 * and stop being read while too many of their bytes wait for one (backpressure
 * through gRPC flow control).
 */
import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js'
import { status as Status } from '@grpc/grpc-js'
import type { Logger } from '../../core/logger.js'
import { errorKind, ShuttingDownError } from '../../core/errors.js'
import { grpcCodeForKind, toGrpcStatus } from '../../core/grpc.js'
import type { StorageNodeMetrics } from '../metrics.js'
import type { JournalStore } from './journal-store.js'
import { JournalRequestError } from './errors.js'
import type { VolumeLog } from './volume-log.js'
import type {
  WireAppendRequest,
  WireAppendResponse,
  WireCheckpointRequest,
  WireCheckpointResponse,
  WireCollectRequest,
  WireCollectResponse,
  WireDropRequest,
  WireOpenRequest,
  WireOpenResponse,
  WireReadRequest,
  WireReadResponse,
} from './proto.js'
import { checkpointToWire, recordToWire, validateCheckpoint, validateCollect, validateEpoch, validateRecords, validateSeq, validateVolumeUid, type RecordLimits } from './validate.js'

export interface JournalServiceLimits extends RecordLimits {
  /** Record bytes one Append stream may have waiting for their fsync before the node stops reading it. */
  maxInFlightBytesPerStream: number
  /** Record bytes per message when streaming Open and Read results. */
  readBatchBytes: number
}

export const defaultJournalServiceLimits: JournalServiceLimits = {
  maxRecordBytes: 32 * 1024 * 1024 + 4096,
  maxRecordsPerMessage: 16_384,
  maxInFlightBytesPerStream: 64 * 1024 * 1024,
  readBatchBytes: 1024 * 1024,
}

export interface JournalServiceComponents {
  store: JournalStore
  logger: Logger
  metrics?: StorageNodeMetrics
}

export interface JournalServiceHandle {
  /** For `server.addService(loadJournalService().service, …)`. */
  handlers: UntypedServiceImplementation
  /** Starts shutdown: append streams finish what they have in flight, then end with UNAVAILABLE. */
  drain(): void
}

/** Builds the JournalService handlers over a store. */
export function createJournalService(limits: JournalServiceLimits, components: JournalServiceComponents): JournalServiceHandle {
  const { store, logger, metrics } = components
  const appendStreams = new Set<() => void>()
  let draining = false

  /** Times a request and logs why it was rejected; internal errors keep their details in the log. */
  async function serve<T>(method: string, work: () => Promise<T>): Promise<T> {
    const stopTimer = metrics?.requestSeconds.startTimer({ method })
    try {
      const result = await work()
      stopTimer?.({ code: Status[Status.OK] })
      return result
    } catch (err) {
      stopTimer?.({ code: Status[grpcCodeForKind(errorKind(err))] })
      if (errorKind(err) === 'internal') logger.error({ method, err }, 'journal request failed')
      else logger.info({ method, reason: (err as Error).message, error: (err as Error).name }, 'journal request rejected')
      throw err
    }
  }

  function unary<Req, Res>(method: string, handle: (req: Req) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      serve(method, () => handle(call.request)).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toGrpcStatus(err)),
      )
    }
  }

  function streaming<Req, Res>(method: string, handle: (call: ServerWritableStream<Req, Res>) => Promise<void>) {
    return (call: ServerWritableStream<Req, Res>): void => {
      serve(method, () => handle(call)).then(
        () => call.end(),
        (err: unknown) => call.emit('error', toGrpcStatus(err)),
      )
    }
  }

  const handlers: UntypedServiceImplementation = {
    open: streaming('JournalOpen', (call: ServerWritableStream<WireOpenRequest, WireOpenResponse>) => openJournal(call, store, limits)),
    append: (call: ServerDuplexStream<WireAppendRequest, WireAppendResponse>) => {
      const finish = handleAppendStream(call, limits, store, serve, () => draining)
      appendStreams.add(finish)
      const forget = (): void => void appendStreams.delete(finish)
      call.once('finish', forget)
      call.once('cancelled', forget)
    },
    checkpoint: unary('JournalCheckpoint', async (req: WireCheckpointRequest): Promise<WireCheckpointResponse> => {
      const uid = validateVolumeUid(req.volumeUid)
      const epoch = validateEpoch(req.epoch)
      const checkpoint = validateCheckpoint(req.checkpoint)
      const stored = await store.withVolume(uid, (log) => log.setCheckpoint(epoch, checkpoint))
      return { checkpoint: checkpointToWire(stored) }
    }),
    read: streaming('JournalRead', (call: ServerWritableStream<WireReadRequest, WireReadResponse>) => readJournal(call, store, limits)),
    drop: unary('JournalDrop', async (req: WireDropRequest) => {
      const uid = validateVolumeUid(req.volumeUid)
      const epoch = validateEpoch(req.epoch, 0)
      await store.withVolume(uid, (log) => log.drop(epoch))
      return {}
    }),
    collect: unary('JournalCollect', async (req: WireCollectRequest): Promise<WireCollectResponse> => {
      const request = validateCollect(req, Date.now())
      const result = await store.collect(request)
      if (!request.dryRun) metrics?.journalCollected.inc(result.collectedJournals)
      logger.info({ ...result, dryRun: request.dryRun, liveVolumes: request.liveVolumeUids.size }, 'journal collection done')
      return result
    }),
  }
  return {
    handlers,
    drain() {
      draining = true
      for (const finish of appendStreams) finish()
    },
  }
}

async function openJournal(call: ServerWritableStream<WireOpenRequest, WireOpenResponse>, store: JournalStore, limits: JournalServiceLimits): Promise<void> {
  const uid = validateVolumeUid(call.request.volumeUid)
  const epoch = validateEpoch(call.request.epoch)
  await store.withVolume(uid, async (log) => {
    const { checkpoint, lastSeq } = await log.open(epoch)
    await send(call, { state: { highestEpoch: log.highestEpoch(), checkpoint: checkpointToWire(checkpoint), lastSeq } })
    await streamRecords(log, epoch, (checkpoint?.seq ?? 0) + 1, lastSeq, limits, (records) => send(call, { batch: { records } }), call)
  })
}

async function readJournal(call: ServerWritableStream<WireReadRequest, WireReadResponse>, store: JournalStore, limits: JournalServiceLimits): Promise<void> {
  const uid = validateVolumeUid(call.request.volumeUid)
  const epoch = validateEpoch(call.request.epoch)
  const fromSeq = validateSeq(call.request.fromSeq, 'from_seq', 0)
  await store.withVolume(uid, (log) => streamRecords(log, epoch, fromSeq, Number.MAX_SAFE_INTEGER, limits, (records) => send(call, { records }), call))
}

/** Reads in batches (each under the volume's lock, so a trim between them is seen) and waits for the stream to drain. */
async function streamRecords(
  log: VolumeLog,
  epoch: number,
  fromSeq: number,
  toSeq: number,
  limits: JournalServiceLimits,
  write: (records: ReturnType<typeof recordToWire>[]) => Promise<void>,
  call: { cancelled: boolean },
): Promise<void> {
  let next = fromSeq
  for (;;) {
    if (call.cancelled) return
    const records = await log.read(epoch, next, toSeq, limits.readBatchBytes)
    if (records.length === 0) return
    await write(records.map(recordToWire))
    next = (records.at(-1)?.seq ?? next) + 1
  }
}

function send<T>(call: ServerWritableStream<unknown, T>, message: T): Promise<void> {
  if (call.write(message)) return Promise.resolve()
  return new Promise<void>((resolve) => {
    call.once('drain', resolve)
    call.once('cancelled', resolve)
  })
}

type Serve = <T>(method: string, work: () => Promise<T>) => Promise<T>

/**
 * One Append stream: every message names the same volume and epoch. Messages are
 * written in arrival order; each is acknowledged once an fsync covers it. The stream
 * pins its volume in the store for its whole life.
 * @returns a function that ends the stream once its in-flight work is done (drain).
 */
function handleAppendStream(
  call: ServerDuplexStream<WireAppendRequest, WireAppendResponse>,
  limits: JournalServiceLimits,
  store: JournalStore,
  serve: Serve,
  draining: () => boolean,
): () => void {
  let log: Promise<VolumeLog> | undefined
  let target: { uid: string; epoch: number } | undefined
  let inFlightBytes = 0
  let waiting = 0
  let ended = false
  let failed = false
  const release = (): void => {
    void log?.then((l) => store.release(l), () => undefined)
    log = undefined
  }
  const fail = (err: unknown): void => {
    if (failed) return
    failed = true
    release()
    call.emit('error', toGrpcStatus(err))
  }
  const finishIfDone = (): void => {
    if (failed || waiting > 0) return
    if (ended) {
      release()
      call.end()
    } else if (draining()) fail(new ShuttingDownError('storage node is shutting down'))
  }
  call.on('data', (req: WireAppendRequest) => {
    if (failed) return
    let bytes = 0
    try {
      const uid = validateVolumeUid(req.volumeUid)
      const epoch = validateEpoch(req.epoch)
      target ??= { uid, epoch }
      if (uid !== target.uid || epoch !== target.epoch) throw new JournalRequestError('every message of an Append stream must name the same volume and epoch')
      const records = validateRecords(req.records, epoch, limits)
      for (const r of records) bytes += r.payload.length
      log ??= store.acquire(uid)
      const volume = log
      waiting += 1
      inFlightBytes += bytes
      if (inFlightBytes > limits.maxInFlightBytesPerStream) call.pause()
      serve('JournalAppend', async () => {
        const l = await volume
        await l.syncThrough(await l.append(epoch, records))
        return l.acknowledgedSeq()
      }).then(
        (durableSeq) => {
          if (!failed) call.write({ durableSeq })
        },
        fail,
      ).finally(() => {
        waiting -= 1
        inFlightBytes -= bytes
        if (inFlightBytes <= limits.maxInFlightBytesPerStream && !failed) call.resume()
        finishIfDone()
      })
    } catch (err) {
      fail(err)
    }
  })
  call.on('end', () => {
    ended = true
    finishIfDone()
  })
  call.on('cancelled', () => {
    failed = true
    release()
  })
  return finishIfDone
}
