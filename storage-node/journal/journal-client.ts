/**
 * JournalClient: one storage node's JournalService, for the engine's replicated
 * journal. Returns domain objects and typed errors (core/grpc.ts rebuilds
 * EpochFencedError and the other journal errors from the status trailer).
 */
import { credentials as grpcCredentials, type ChannelCredentials, type ClientDuplexStream, type Client as GrpcClient } from '@grpc/grpc-js'
import { CairnError, ResourceExhaustedError, ShuttingDownError } from '../../core/errors.js'
import { callUnary, clientChannelOptions, fromGrpcError, RemoteError, type CairnErrorClass } from '../../core/grpc.js'
import { UnauthenticatedError } from '../auth.js'
import {
  EpochFencedError,
  JournalCollectingError,
  JournalConflictError,
  JournalCorruptError,
  JournalCutoffError,
  JournalDroppedError,
  JournalNotOpenError,
  JournalRequestError,
  JournalSequenceError,
} from './errors.js'
import type { CollectResult } from './journal-store.js'
import type { CheckpointState } from './journal-files.js'
import type { StoredRecord } from './record.js'
import { loadJournalService, type WireAppendResponse, type WireCheckpoint, type WireCheckpointResponse, type WireCollectResponse, type WireOpenResponse, type WireReadResponse, type WireRecord } from './proto.js'
import { checkpointToWire, recordToWire } from './validate.js'

/** Errors a journal replica sends that the client rebuilds as their own classes. */
export const JOURNAL_SERVICE_ERRORS: readonly CairnErrorClass[] = [
  EpochFencedError,
  JournalNotOpenError,
  JournalSequenceError,
  JournalConflictError,
  JournalRequestError,
  JournalDroppedError,
  JournalCorruptError,
  JournalCutoffError,
  JournalCollectingError,
  ResourceExhaustedError,
  ShuttingDownError,
  UnauthenticatedError,
]

/** A Collect call: the uids of the journals the node must keep, the cutoff, and whether to only count. */
export interface JournalCollectRequest {
  liveVolumeUids: readonly string[]
  olderThanUnixMs: number
  dryRun: boolean
}

export interface JournalClientInit {
  /** `host:port` of the node's gRPC listener. */
  address: string
  /** @default insecure (loopback and tests only) */
  credentials?: ChannelCredentials
  /** Deadline of Checkpoint and Drop. @default 30000 */
  deadlineMs?: number
  /** Deadline of Open and Read, which stream a whole journal. @default 120000 */
  streamDeadlineMs?: number
  /** Must exceed the node's largest record. @default 67108864 (64 MiB) */
  maxMessageBytes?: number
  /** Cluster token sent as `authorization: Bearer …` on every call. @default none */
  token?: string
}

/** What Open returned: the replica's state and every record after its checkpoint. */
export interface OpenedReplica {
  highestEpoch: number
  checkpoint: CheckpointState | null
  lastSeq: number
  records: StoredRecord[]
}

type StreamMethod = (req: unknown, options: { deadline: number }) => NodeJS.ReadableStream

export class JournalClient {
  private readonly client: GrpcClient
  private readonly deadlineMs: number
  private readonly streamDeadlineMs: number

  constructor(init: JournalClientInit) {
    const { Client } = loadJournalService()
    this.client = new Client(init.address, init.credentials ?? grpcCredentials.createInsecure(), clientChannelOptions(init))
    this.deadlineMs = init.deadlineMs ?? 30_000
    this.streamDeadlineMs = init.streamDeadlineMs ?? 120_000
  }

  close(): void {
    this.client.close()
  }

  private unary<T>(method: string, request: unknown): Promise<T> {
    return callUnary<T>(this.client, method, request, this.deadlineMs, JOURNAL_SERVICE_ERRORS)
  }

  /** Calls a server-streaming method and hands each message to `onMessage`; resolves at the stream's end. */
  private stream<T>(method: string, request: unknown, onMessage: (msg: T) => void): Promise<void> {
    const fn = (this.client as unknown as Record<string, StreamMethod>)[method] as StreamMethod
    const call = fn.call(this.client, request, { deadline: Date.now() + this.streamDeadlineMs })
    return new Promise<void>((resolve, reject) => {
      call.on('data', (msg: T) => {
        try {
          onMessage(msg)
        } catch (err) {
          ;(call as unknown as { cancel(): void }).cancel()
          reject(err)
        }
      })
      call.on('error', (err) => reject(fromGrpcError(err, JOURNAL_SERVICE_ERRORS)))
      call.on('end', resolve)
    })
  }

  /** Raises the replica's fence to `epoch` and returns its checkpoint and records. */
  async open(volumeUid: string, epoch: number): Promise<OpenedReplica> {
    let state: OpenedReplica | undefined
    await this.stream<WireOpenResponse>('open', { volumeUid, epoch }, (msg) => {
      if (msg.result === 'state' && msg.state != null) {
        state = { highestEpoch: msg.state.highestEpoch, checkpoint: fromWireCheckpoint(msg.state.checkpoint), lastSeq: msg.state.lastSeq, records: [] }
      } else if (msg.result === 'batch' && msg.batch != null && state !== undefined) {
        for (const r of msg.batch.records) state.records.push(fromWireRecord(r))
      } else throw new RemoteError('internal', undefined, 'journal Open sent records before its state')
    })
    if (state === undefined) throw new RemoteError('internal', undefined, 'journal Open ended without a state')
    return state
  }

  /** Records with seq ≥ fromSeq after the replica's checkpoint. */
  async read(volumeUid: string, epoch: number, fromSeq: number): Promise<StoredRecord[]> {
    const records: StoredRecord[] = []
    await this.stream<WireReadResponse>('read', { volumeUid, epoch, fromSeq }, (msg) => {
      for (const r of msg.records) records.push(fromWireRecord(r))
    })
    return records
  }

  /** Stores the checkpoint durably; returns the replica's checkpoint (newer than `checkpoint` if that was stale). */
  async checkpoint(volumeUid: string, epoch: number, checkpoint: CheckpointState): Promise<CheckpointState> {
    const res = await this.unary<WireCheckpointResponse>('checkpoint', { volumeUid, epoch, checkpoint: checkpointToWire(checkpoint) })
    const stored = fromWireCheckpoint(res.checkpoint)
    if (stored === null) throw new RemoteError('internal', undefined, 'journal Checkpoint returned no checkpoint')
    return stored
  }

  async drop(volumeUid: string, epoch: number): Promise<void> {
    await this.unary('drop', { volumeUid, epoch })
  }

  /** Deletes the journals not in `liveVolumeUids` (the ones this node must keep) that nothing changed since before the cutoff (garbage collection). */
  async collect(request: JournalCollectRequest): Promise<CollectResult> {
    const res = await this.unary<WireCollectResponse>('collect', request)
    return { scannedJournals: res.scannedJournals, collectedJournals: res.collectedJournals, freedBytes: res.freedBytes, youngJournals: res.youngJournals, busyJournals: res.busyJournals }
  }

  /** An Append stream; `onAck` gets each acknowledged durable seq, `onError` the one failure that ends it. */
  openAppendStream(volumeUid: string, epoch: number, handlers: AppendHandlers): AppendStream {
    const call = (this.client as unknown as { append: () => ClientDuplexStream<unknown, WireAppendResponse> }).append()
    return new AppendStream(call, volumeUid, epoch, handlers)
  }

  /** Sends raw wire requests on an Append stream: for tests of the node's validation. */
  openRawAppendStream(): ClientDuplexStream<unknown, WireAppendResponse> {
    return (this.client as unknown as { append: () => ClientDuplexStream<unknown, WireAppendResponse> }).append()
  }
}

export interface AppendHandlers {
  onAck(durableSeq: number): void
  onError(err: CairnError): void
}

/** One Append stream to one replica. Fails once: an error or an unexpected end reaches `onError` exactly once. */
export class AppendStream {
  private done = false

  constructor(
    private readonly call: ClientDuplexStream<unknown, WireAppendResponse>,
    private readonly volumeUid: string,
    private readonly epoch: number,
    private readonly handlers: AppendHandlers,
  ) {
    call.on('data', (res: WireAppendResponse) => {
      if (!this.done) handlers.onAck(res.durableSeq)
    })
    call.on('error', (err) => this.fail(fromGrpcError(err, JOURNAL_SERVICE_ERRORS)))
    call.on('end', () => this.fail(new RemoteError('unavailable', undefined, 'journal append stream ended')))
  }

  private fail(err: CairnError): void {
    if (this.done) return
    this.done = true
    this.handlers.onError(err)
  }

  /** Queues records (contiguous seqs) as one message; gRPC flow control buffers them. */
  send(records: readonly StoredRecord[]): void {
    if (this.done || records.length === 0) return
    this.call.write({ volumeUid: this.volumeUid, epoch: this.epoch, records: records.map(recordToWire) })
  }

  /** Stops the stream without reporting an error (the caller replaced or closed it). */
  cancel(): void {
    this.done = true
    this.call.cancel()
  }
}

function fromWireCheckpoint(wire: WireCheckpoint | null | undefined): CheckpointState | null {
  if (wire == null) return null
  return { rootCid: wire.rootCid === '' ? null : wire.rootCid, sizeBytes: wire.sizeBytes, seq: wire.seq }
}

function fromWireRecord(r: WireRecord): StoredRecord {
  return { seq: r.seq, epoch: r.epoch, op: r.op, payload: new Uint8Array(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength) }
}
