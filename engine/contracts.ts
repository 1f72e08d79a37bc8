/**
 * The seams inside the volume engine. Each is implemented in its own module
 * (chunk store and manifest: engine/chunks/; journal: engine/journal/) and used by
 * the volume engine (engine/volume/), so the pieces can be built, tested and
 * replaced independently. docs/adr/0008-volume-engine.md explains how they fit.
 */
import type { CID } from 'multiformats/cid'

// ------------------------------------------------------------------ chunks

/** Multicodec of a stored chunk: volume data is `raw`, manifest pages are `dag-cbor`. */
export type ChunkCodec = 'raw' | 'dag-cbor'

/**
 * Content-addressed, erasure-coded chunks spread over the storage nodes of one
 * block store, coded with one policy's k+m and hash.
 */
export interface ChunkStore {
  /**
   * Hashes, encodes and places each chunk, putting shards to their nodes in one
   * batch per node; resolves with the CIDs (same order) once at least the write
   * quorum of every chunk's shards is durable (fsynced) on its node. Chunks that
   * already exist are still written (puts are idempotent), so a retry is safe.
   * Callers never pass all-zero chunks: those are never stored.
   * @throws ChunkWriteError (kind 'unavailable') when the quorum cannot be met.
   */
  putChunks(chunks: readonly Uint8Array[], codec: ChunkCodec): Promise<CID[]>
  /**
   * The chunks, each rebuilt from its data shards (parity when a data shard is
   * missing or corrupt) and verified against its CID before it is returned; bad
   * shards are reported. Served from a bounded cache when possible. The arrays returned
   * are shared with that cache and with other callers: read them, never write to them
   * (copy first, as the flusher's read-modify-write does).
   * @throws ChunkUnavailableError (kind 'unavailable' or 'data-loss') when fewer than k good shards can be found.
   */
  getChunks(cids: readonly CID[]): Promise<Uint8Array[]>
}

/**
 * A volume's map from chunk index to chunk CID, as a Merkle tree of DAG-CBOR pages
 * stored as chunks. Roots are immutable: an update returns a new root and shares
 * every unchanged page, so a snapshot or clone is a saved root (O(1)).
 */
export interface ManifestStore {
  /** The CIDs at `indexes` under `root` (undefined: never written, trimmed or zero). `null` root: empty volume. */
  lookup(root: CID | null, indexes: readonly number[]): Promise<(CID | undefined)[]>
  /**
   * A new root with `changes` applied (a `null` value removes the entry: the chunk
   * reads as zeros and takes no space). Writes only the changed pages. Returns
   * `null` when the map becomes empty.
   */
  update(root: CID | null, changes: ReadonlyMap<number, CID | null>): Promise<CID | null>
  /** Entries with index in [fromIndex, toIndex), ascending: BLOCK_STATUS and copying. */
  entries(root: CID | null, fromIndex: number, toIndex: number): AsyncIterable<[number, CID]>
  /** Every page CID reachable from `root` (for garbage collection's mark phase). */
  pages(root: CID | null): AsyncIterable<CID>
}

// ------------------------------------------------------------------ journal

/** One logged mutation of a volume. Offsets and lengths are in bytes. */
export type JournalOp =
  | { kind: 'write'; offsetBytes: number; data: Uint8Array }
  | { kind: 'trim'; offsetBytes: number; lengthBytes: number }
  | { kind: 'zero'; offsetBytes: number; lengthBytes: number }
  | { kind: 'resize'; sizeBytes: number }

export interface JournalRecord {
  /** Strictly increasing per volume incarnation, starting at 1; no gaps. */
  seq: number
  op: JournalOp
}

/** State up to `seq` lives in the chunk store under `rootCid`. */
export interface JournalCheckpoint {
  rootCid: string | null
  sizeBytes: number
  seq: number
}

export interface AppendedRecord {
  seq: number
  /** Resolves once this record and every earlier one are fsynced on every journal replica. */
  durable: Promise<void>
}

/**
 * A volume's write-ahead journal, replicated to `journalReplicas` storage nodes
 * and fenced by epoch: once a newer epoch opened it, every call from an older one
 * fails with EpochFencedError on every replica.
 */
export interface VolumeJournal {
  /**
   * Takes the journal at this engine's epoch on every replica, then returns the
   * newest checkpoint and every record after it, in seq order (recovery).
   */
  open(): Promise<{ checkpoint: JournalCheckpoint | null; records: JournalRecord[] }>
  /**
   * Assigns the next seq and sends the record to every replica. Resolves as soon
   * as the record is accepted into the bounded send window (backpressure: waits
   * while the window is full); durability is `durable`.
   */
  append(op: JournalOp): Promise<AppendedRecord>
  /** Resolves once every record appended before the call is durable on every replica (NBD FLUSH). */
  sync(): Promise<void>
  /**
   * Records the checkpoint durably on every replica, then lets them drop records
   * with seq ≤ checkpoint.seq.
   */
  checkpoint(checkpoint: JournalCheckpoint): Promise<void>
  /** Ids of the storage nodes currently holding the journal (changes when a replica is replaced). */
  replicas(): readonly string[]
  close(): Promise<void>
}
