/**
 * The segment store's index: one better-sqlite3 database saying which shard lives
 * where, and how full each segment is. It is the truth about what is stored;
 * segment bytes that no row points at are dead. See docs/adr/0003-shard-store.md
 * for why puts commit with synchronous=NORMAL and everything else with FULL.
 */
import Database from 'better-sqlite3'
import type { ShardAddress } from '../core/shard.js'
import { DataDirError } from './shard-store.js'

/** Bumped when the schema changes incompatibly; a store refuses a directory from another version. */
export const INDEX_SCHEMA_VERSION = '1'

export type SegmentState = 'active' | 'sealed' | 'compacting'

export interface SegmentRow {
  id: number
  state: SegmentState
  /** Committed length: every indexed record of the segment ends at or before it. */
  sizeBytes: number
  liveBytes: number
}

export interface ShardRow {
  cid: Buffer
  idx: number
  segment: number
  offset: number
  length: number
  lastPutMs: number
  corrupt: boolean
}

/** Rows a commit replaced (corrupt copies superseded by a new put). */
export interface Replaced {
  count: number
  bytes: number
  corrupt: number
}

/** A record just made durable in a segment, to be indexed. */
export interface NewRecord {
  cid: Uint8Array
  index: number
  offsetBytes: number
  lengthBytes: number
  lastPutMs: number
  /**
   * The writer found no row for this shard when it wrote it, so the commit can insert
   * without looking for a row to replace (it still falls back if one appeared).
   */
  fresh?: boolean
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
  id INTEGER PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('active', 'sealed', 'compacting')),
  size_bytes INTEGER NOT NULL,
  live_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
  cid BLOB NOT NULL,
  idx INTEGER NOT NULL,
  segment INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  last_put_ms INTEGER NOT NULL,
  corrupt INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (cid, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shards_by_segment ON shards (segment, offset);
`

type RawShardRow = Omit<ShardRow, 'corrupt' | 'lastPutMs'> & { corrupt: number; last_put_ms: number }

function toShardRow(raw: RawShardRow): ShardRow {
  return { cid: raw.cid, idx: raw.idx, segment: raw.segment, offset: raw.offset, length: raw.length, lastPutMs: raw.last_put_ms, corrupt: raw.corrupt !== 0 }
}

const rowColumns = 'cid, idx, segment, offset, length, last_put_ms, corrupt'

export class SegmentIndex {
  private readonly db: Database.Database
  private readonly stmts

  /** Holds `<path>.lock` exclusively while open: a second store on the directory is refused. */
  private readonly lock: Database.Database | undefined

  /**
   * Opens (creating if needed) the index.
   * @param options.lockFile take the directory's exclusive lock (`<path>.lock`); false only
   *   for a second connection of the same store (its index worker). @default true
   */
  constructor(path: string, options: { lockFile?: boolean } = {}) {
    try {
      this.lock = options.lockFile === false ? undefined : lockDirectory(`${path}.lock`)
      // Two connections of one store share the file (the index worker writes, this one
      // reads and makes the rarer durable changes): a writer waits for the other's commit.
      this.db = new Database(path, { timeout: 10_000 })
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = NORMAL')
      // Random keys dirty about one page per indexed row, and every automatic checkpoint
      // fsyncs the WAL and the database on the main thread: checkpoint every 8192 pages
      // (32 MiB of WAL) instead of SQLite's 1000, so 8x fewer fsyncs stall the event loop
      // and a page rewritten between checkpoints is copied once.
      this.db.pragma('wal_autocheckpoint = 8192')
      this.db.exec(schema)
    } catch (err) {
      this.lock?.close()
      throw new DataDirError(`cannot open shard index ${path}: ${(err as Error).message}`, { cause: err })
    }
    this.checkVersion()
    const db = this.db
    this.stmts = {
      // Raw arrays: the hottest statement of the read path, about twice as fast as objects.
      lookup: db.prepare('SELECT segment, offset, length, last_put_ms, corrupt FROM shards WHERE cid = ? AND idx = ?').raw(true),
      insert: db.prepare(`INSERT OR REPLACE INTO shards (${rowColumns}) VALUES (?, ?, ?, ?, ?, ?, 0)`),
      insertFresh: db.prepare(`INSERT INTO shards (${rowColumns}) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (cid, idx) DO NOTHING`),
      keysAfter: db.prepare('SELECT cid, idx FROM shards WHERE (cid, idx) > (?, ?) ORDER BY cid, idx LIMIT ?').raw(true),
      keysFirst: db.prepare('SELECT cid, idx FROM shards ORDER BY cid, idx LIMIT ?').raw(true),
      touch: db.prepare('UPDATE shards SET last_put_ms = max(last_put_ms, ?) WHERE cid = ? AND idx = ?'),
      remove: db.prepare('DELETE FROM shards WHERE cid = ? AND idx = ? AND last_put_ms < ? RETURNING segment, length'),
      markCorrupt: db.prepare('UPDATE shards SET corrupt = 1 WHERE cid = ? AND idx = ? AND segment = ? AND offset = ?'),
      segments: db.prepare('SELECT id, state, size_bytes AS sizeBytes, live_bytes AS liveBytes FROM segments ORDER BY id'),
      // max(): flushes of one segment commit in order, but a committed size must never go back.
      setSegment: db.prepare('UPDATE segments SET size_bytes = max(size_bytes, ?), live_bytes = live_bytes + ? WHERE id = ?'),
      addLive: db.prepare('UPDATE segments SET live_bytes = live_bytes + ? WHERE id = ?'),
      insertSegment: db.prepare('INSERT INTO segments (id, state, size_bytes, live_bytes) VALUES (?, ?, 0, 0)'),
      setState: db.prepare('UPDATE segments SET state = ? WHERE id = ?'),
      deleteSegment: db.prepare('DELETE FROM segments WHERE id = ?'),
      liveInSegment: db.prepare(`SELECT ${rowColumns} FROM shards WHERE segment = ? ORDER BY offset`),
      move: db.prepare('UPDATE shards SET segment = ?, offset = ? WHERE cid = ? AND idx = ? AND segment = ? AND offset = ?'),
      dropAt: db.prepare('DELETE FROM shards WHERE cid = ? AND idx = ? AND segment = ? AND offset = ?'),
      counts: db.prepare('SELECT count(*) AS n, coalesce(sum(length), 0) AS bytes, coalesce(sum(corrupt), 0) AS corrupt FROM shards'),
    }
  }

  private checkVersion(): void {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined
    if (row === undefined) {
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?)").run(INDEX_SCHEMA_VERSION)
    } else if (row.value !== INDEX_SCHEMA_VERSION) {
      throw new DataDirError(`shard index schema version ${row.value}, this build reads ${INDEX_SCHEMA_VERSION}`)
    }
  }

  /** False once closed. */
  get open(): boolean {
    return this.db.open
  }

  close(): void {
    if (this.db.open) this.db.close()
    if (this.lock?.open === true) this.lock.close()
  }

  /** Runs `fn` in one transaction whose commit is fsynced before it returns. */
  durably<T>(fn: () => T): T {
    this.db.pragma('synchronous = FULL')
    try {
      return this.db.transaction(fn)()
    } finally {
      this.db.pragma('synchronous = NORMAL')
    }
  }

  lookup(address: ShardAddress): ShardRow | undefined {
    const cid = asBuffer(address.chunkCid)
    const raw = this.stmts.lookup.get(cid, address.index) as [number, number, number, number, number] | undefined
    if (raw === undefined) return undefined
    return { cid, idx: address.index, segment: raw[0], offset: raw[1], length: raw[2], lastPutMs: raw[3], corrupt: raw[4] !== 0 }
  }

  /** Refreshes stored shards' last-put times (idempotent re-puts), in one transaction. */
  touchAll(addresses: readonly ShardAddress[], nowMs: number): void {
    this.db.transaction(() => {
      for (const a of addresses) this.stmts.touch.run(nowMs, asBuffer(a.chunkCid), a.index)
    })()
  }

  segments(): SegmentRow[] {
    return this.stmts.segments.all() as SegmentRow[]
  }

  /**
   * Indexes records whose bytes are already fsynced in `segmentId`, and moves its
   * committed size to `sizeBytes`, in one transaction. A record replacing a corrupt
   * copy takes the copy's live bytes away from the copy's segment.
   */
  commitWrites(segmentId: number, sizeBytes: number, records: readonly NewRecord[]): Replaced {
    return this.db.transaction(() => {
      const replaced: Replaced = { count: 0, bytes: 0, corrupt: 0 }
      let liveDelta = 0
      for (const r of records) {
        const cid = asBuffer(r.cid)
        // A fresh record skips the lookup (about a third of a row's cost); a conflict means a row appeared after all.
        if (r.fresh !== true || this.stmts.insertFresh.run(cid, r.index, segmentId, r.offsetBytes, r.lengthBytes, r.lastPutMs).changes === 0) {
          this.replaceRow(segmentId, r, replaced)
        }
        liveDelta += r.lengthBytes
      }
      this.stmts.setSegment.run(sizeBytes, liveDelta, segmentId)
      return replaced
    })()
  }

  /** Indexes `r`, taking the live bytes of any row it replaces away from that row's segment. */
  private replaceRow(segmentId: number, r: NewRecord, replaced: Replaced): void {
    const previous = this.lookup({ chunkCid: r.cid, index: r.index })
    if (previous !== undefined) {
      this.stmts.addLive.run(-previous.length, previous.segment)
      replaced.count += 1
      replaced.bytes += previous.length
      if (previous.corrupt) replaced.corrupt += 1
    }
    this.stmts.insert.run(asBuffer(r.cid), r.index, segmentId, r.offsetBytes, r.lengthBytes, r.lastPutMs)
  }

  /**
   * Up to `limit` shard addresses after `after` in key order, without the rest of the
   * row: for building an in-memory filter page by page.
   */
  keysAfter(after: ShardAddress | undefined, limit: number): Array<[Buffer, number]> {
    const rows = after === undefined ? this.stmts.keysFirst.all(limit) : this.stmts.keysAfter.all(asBuffer(after.chunkCid), after.index, limit)
    return rows as Array<[Buffer, number]>
  }

  /** Deletes shards put before `cutoffMs`, durably; returns how many rows went away and the bytes they held. */
  deleteShards(addresses: readonly ShardAddress[], cutoffMs: number): { count: number; bytes: number; corrupt: number } {
    return this.durably(() => {
      let count = 0
      let bytes = 0
      let corrupt = 0
      for (const a of addresses) {
        const row = this.lookup(a)
        if (row === undefined) continue
        const gone = this.stmts.remove.get(asBuffer(a.chunkCid), a.index, cutoffMs) as { segment: number; length: number } | undefined
        if (gone === undefined) continue
        this.stmts.addLive.run(-gone.length, gone.segment)
        count += 1
        bytes += gone.length
        if (row.corrupt) corrupt += 1
      }
      return { count, bytes, corrupt }
    })
  }

  /** Flags the row still pointing at (segment, offset) as corrupt; returns whether it did. */
  markCorrupt(row: ShardRow): boolean {
    return this.stmts.markCorrupt.run(row.cid, row.idx, row.segment, row.offset).changes > 0
  }

  /** Shards after `after` in (cid, idx) order, optionally within a CID prefix. */
  list(after: ShardAddress | undefined, prefix: Uint8Array | undefined, limit: number): ShardRow[] {
    const where: string[] = []
    const params: unknown[] = []
    if (after !== undefined) {
      where.push('(cid, idx) > (?, ?)')
      params.push(asBuffer(after.chunkCid), after.index)
    }
    if (prefix !== undefined && prefix.length > 0) {
      where.push('cid >= ?')
      params.push(asBuffer(prefix))
      const end = prefixEnd(prefix)
      if (end !== undefined) {
        where.push('cid < ?')
        params.push(end)
      }
    }
    const sql = `SELECT ${rowColumns} FROM shards ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY cid, idx LIMIT ?`
    return (this.db.prepare(sql).all(...params, limit) as RawShardRow[]).map(toShardRow)
  }

  counts(): { shardCount: number; shardBytes: number; corruptCount: number } {
    const r = this.stmts.counts.get() as { n: number; bytes: number; corrupt: number }
    return { shardCount: r.n, shardBytes: r.bytes, corruptCount: r.corrupt }
  }

  /** Adds a segment row, durably: a segment file exists only after its row does. */
  addSegment(id: number, state: SegmentState): void {
    this.durably(() => this.stmts.insertSegment.run(id, state))
  }

  /** Seals `oldId` and opens `newId` as the active segment, durably. */
  rollSegment(oldId: number, newId: number): void {
    this.durably(() => {
      this.stmts.setState.run('sealed', oldId)
      this.stmts.insertSegment.run(newId, 'active')
    })
  }

  removeSegment(id: number): void {
    this.durably(() => this.stmts.deleteSegment.run(id))
  }

  liveRows(segmentId: number): ShardRow[] {
    return (this.stmts.liveInSegment.all(segmentId) as RawShardRow[]).map(toShardRow)
  }

  /**
   * Points the rows that still reference `oldId` at their copies in `newId`, drops rows
   * whose old copy was corrupt, seals `newId` and forgets `oldId`: one durable
   * transaction, after which the old file may be unlinked.
   * @returns the dropped rows that were still indexed.
   */
  finishCompaction(oldId: number, newId: number, sizeBytes: number, moved: ReadonlyArray<{ row: ShardRow; newOffset: number }>, dropped: readonly ShardRow[]): ShardRow[] {
    return this.durably(() => {
      let live = 0
      for (const { row, newOffset } of moved) {
        if (this.stmts.move.run(newId, newOffset, row.cid, row.idx, oldId, row.offset).changes > 0) live += row.length
      }
      const removed = dropped.filter((row) => this.stmts.dropAt.run(row.cid, row.idx, oldId, row.offset).changes > 0)
      const left = this.db.prepare('SELECT count(*) AS n FROM shards WHERE segment = ?').get(oldId) as { n: number }
      if (left.n !== 0) throw new DataDirError(`compaction of segment ${oldId} left ${left.n} rows behind`)
      this.db.prepare("UPDATE segments SET state = 'sealed', size_bytes = ?, live_bytes = ? WHERE id = ?").run(sizeBytes, live, newId)
      this.stmts.deleteSegment.run(oldId)
      return removed
    })
  }
}

/**
 * Takes an exclusive SQLite lock on `path` and keeps it until the returned connection
 * closes. SQLite's POSIX locks end with the process (no stale lock after a crash) and it
 * arbitrates connections inside one process too, so a second store in the same process
 * is refused as well. No busy wait: a locked directory is an error now, not in seconds.
 */
function lockDirectory(path: string): Database.Database {
  const lock = new Database(path, { timeout: 0 })
  try {
    lock.pragma('locking_mode = EXCLUSIVE')
    lock.exec('CREATE TABLE IF NOT EXISTS owner (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL)')
    // Only a write takes the exclusive lock (a read keeps a shared one), and exclusive mode keeps it.
    lock.prepare('INSERT OR REPLACE INTO owner (id, pid) VALUES (1, ?)').run(process.pid)
    return lock
  } catch (err) {
    lock.close()
    throw err
  }
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** The smallest byte string greater than every string starting with `prefix`, or undefined if none. */
function prefixEnd(prefix: Uint8Array): Buffer | undefined {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1
      return end.subarray(0, i + 1)
    }
  }
  return undefined
}

/** Bits per address in each filter layer: with 7 probes, about 1% false positives when full. */
const FILTER_BITS_PER_ADDRESS = 10
const FILTER_PROBES = 7

interface FilterLayer {
  bits: Uint32Array
  /** Bit count minus one; the bit count is a power of two. */
  mask: number
  capacity: number
  count: number
}

/**
 * A Bloom filter of shard addresses: "certainly not stored" without an index lookup,
 * which is what almost every put of new data asks. It never forgets an address
 * (deleted shards stay in it as false positives, which only cost a lookup) and it grows
 * by adding a layer twice the size of the last when the last is full.
 */
export class AddressFilter {
  private readonly layers: FilterLayer[] = []

  /** @param initialCapacity addresses the first layer holds before a second is added */
  constructor(initialCapacity: number) {
    this.addLayer(Math.max(1024, initialCapacity))
  }

  /** Memory the bit arrays take. */
  get sizeBytes(): number {
    return this.layers.reduce((sum, l) => sum + l.bits.byteLength, 0)
  }

  add(cid: Uint8Array, index: number): void {
    this.addHash(addressHash(cid, index))
  }

  /** False only if `add` was never called with this address. */
  mayContain(cid: Uint8Array, index: number): boolean {
    return this.mayContainHash(addressHash(cid, index))
  }

  /** `add` with the address's `addressHash` computed beforehand (off the caller's critical path). */
  addHash(h1: number): void {
    let layer = this.layers[this.layers.length - 1] as FilterLayer
    if (layer.count >= layer.capacity) layer = this.addLayer(layer.capacity * 2)
    layer.count += 1
    const h2 = mix32(h1) | 1
    for (let i = 0, h = h1; i < FILTER_PROBES; i++, h = (h + h2) | 0) {
      const bit = h & layer.mask
      layer.bits[bit >>> 5] = (layer.bits[bit >>> 5] as number) | (1 << (bit & 31))
    }
  }

  /** `mayContain` for an address's `addressHash`. */
  mayContainHash(h1: number): boolean {
    const h2 = mix32(h1) | 1
    for (const layer of this.layers) {
      let all = true
      for (let i = 0, h = h1; i < FILTER_PROBES && all; i++, h = (h + h2) | 0) {
        const bit = h & layer.mask
        all = ((layer.bits[bit >>> 5] as number) & (1 << (bit & 31))) !== 0
      }
      if (all) return true
    }
    return false
  }

  private addLayer(capacity: number): FilterLayer {
    // Round the bit count up to a power of two so a probe is a mask, not a division.
    const bitCount = 2 ** Math.ceil(Math.log2(capacity * FILTER_BITS_PER_ADDRESS))
    const layer = { bits: new Uint32Array(bitCount / 32), mask: bitCount - 1, capacity, count: 0 }
    this.layers.push(layer)
    return layer
  }
}

/** FNV-1a over the CID bytes and the index: CIDs may be chosen by a client, so every byte counts. */
export function addressHash(cid: Uint8Array, index: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < cid.length; i++) h = Math.imul(h ^ (cid[i] as number), 0x01000193)
  return mix32(Math.imul(h ^ index, 0x01000193))
}

/** murmur3's finalizer: spreads every input bit over the output. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) | 0
}

/**
 * Records in a form that crosses to a worker thread cheaply: a record's CID is usually a
 * view into its whole shard, and cloning a view copies the buffer behind it, so the CIDs
 * are packed into one array and the numbers into another.
 */
export interface PackedRecords {
  cids: Uint8Array
  /** End offset of each record's CID in `cids`. */
  cidEnds: Uint32Array
  /** Five numbers a record: index, offsetBytes, lengthBytes, lastPutMs, fresh (0/1). */
  numbers: Float64Array
}

export function packRecords(records: readonly NewRecord[]): PackedRecords {
  let total = 0
  for (const r of records) total += r.cid.length
  const cids = new Uint8Array(total)
  const cidEnds = new Uint32Array(records.length)
  const numbers = new Float64Array(records.length * 5)
  let at = 0
  records.forEach((r, i) => {
    cids.set(r.cid, at)
    at += r.cid.length
    cidEnds[i] = at
    const n = i * 5
    numbers[n] = r.index
    numbers[n + 1] = r.offsetBytes
    numbers[n + 2] = r.lengthBytes
    numbers[n + 3] = r.lastPutMs
    numbers[n + 4] = r.fresh === true ? 1 : 0
  })
  return { cids, cidEnds, numbers }
}

export function unpackRecords(packed: PackedRecords): NewRecord[] {
  const { cidEnds, numbers } = packed
  // Buffer views: SQLite binds Buffers, so the index need not wrap each CID again.
  const cids = Buffer.from(packed.cids.buffer, packed.cids.byteOffset, packed.cids.byteLength)
  const records: NewRecord[] = new Array(cidEnds.length)
  let start = 0
  for (let i = 0; i < cidEnds.length; i++) {
    const end = cidEnds[i] as number
    const n = i * 5
    records[i] = {
      cid: cids.subarray(start, end),
      index: numbers[n] as number,
      offsetBytes: numbers[n + 1] as number,
      lengthBytes: numbers[n + 2] as number,
      lastPutMs: numbers[n + 3] as number,
      fresh: numbers[n + 4] === 1,
    }
    start = end
  }
  return records
}

interface CachedLocation {
  cid: Buffer
  index: number
  segment: number
  offset: number
  length: number
}

/**
 * Where recently read shards live, so a repeated read skips the index lookup (3–7 µs of a
 * ~16 µs read). Bounded: past `maxEntries` the oldest entry goes. Keyed by the address
 * hash with the address kept to compare, so a collision is a miss, never a wrong shard
 * (and every read still verifies the record it finds). Only the store's read path fills
 * it, and the store clears it whenever rows move or go (deletes, corrupt marks,
 * compaction); a put never moves a stored shard.
 */
export class LocationCache {
  private readonly entries = new Map<number, CachedLocation>()

  /** @param maxEntries most locations held; 0 disables the cache */
  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.entries.size
  }

  get(hash: number, cid: Uint8Array, index: number): CachedLocation | undefined {
    const e = this.entries.get(hash)
    if (e === undefined || e.index !== index || Buffer.compare(e.cid, cid) !== 0) return undefined
    return e
  }

  set(hash: number, row: ShardRow): void {
    if (this.maxEntries <= 0) return
    if (this.entries.size >= this.maxEntries && !this.entries.has(hash)) {
      // Insertion order: the first key is the oldest.
      this.entries.delete(this.entries.keys().next().value as number)
    }
    // A copy: row.cid may be a view into a large read buffer.
    this.entries.set(hash, { cid: Buffer.from(row.cid), index: row.idx, segment: row.segment, offset: row.offset, length: row.length })
  }

  delete(hash: number): void {
    this.entries.delete(hash)
  }

  clear(): void {
    this.entries.clear()
  }
}

/**
 * A record whose bytes are fsynced in the active segment and acknowledged, waiting for
 * the index (see `WaitingRecords`).
 */
export interface WaitingRecord extends NewRecord {
  lastPutMs: number
  /** `addressHash` of the record's address. */
  hash: number
  /** `lastPutMs` as last sent to the index worker: a later one must be written again. */
  sentLastPutMs: number
  /** The next record with the same hash (a collision chain); managed by `WaitingRecords`. */
  next: WaitingRecord | undefined
}

/**
 * The records waiting for the index, keyed by address hash with collisions chained and
 * told apart by the address bytes. A number key instead of a hex string key per shard:
 * building, hashing and later collecting one ~80-character string per put shard was a
 * visible share of the put path's event-loop CPU and of its garbage, and the map insert
 * happens after the durable write, on the ack path.
 */
export class WaitingRecords {
  private readonly byHash = new Map<number, WaitingRecord>()
  private count = 0

  get size(): number {
    return this.count
  }

  get(hash: number, cid: Uint8Array, index: number): WaitingRecord | undefined {
    for (let r = this.byHash.get(hash); r !== undefined; r = r.next) {
      if (r.index === index && Buffer.compare(r.cid, cid) === 0) return r
    }
    return undefined
  }

  /** Adds a record whose address is not held yet (the writer looked it up first). */
  add(record: WaitingRecord): void {
    record.next = this.byHash.get(record.hash)
    this.byHash.set(record.hash, record)
    this.count += 1
  }

  /** Removes this very record object; false if it is not held (already committed and cleared). */
  delete(record: WaitingRecord): boolean {
    let previous: WaitingRecord | undefined
    for (let r = this.byHash.get(record.hash); r !== undefined; previous = r, r = r.next) {
      if (r !== record) continue
      if (previous !== undefined) previous.next = r.next
      else if (r.next !== undefined) this.byHash.set(record.hash, r.next)
      else this.byHash.delete(record.hash)
      r.next = undefined
      this.count -= 1
      return true
    }
    return false
  }

  /** Every record, in no particular order (a commit does not depend on it: addresses are distinct). */
  toArray(): WaitingRecord[] {
    const out: WaitingRecord[] = []
    for (const first of this.byHash.values()) {
      for (let r: WaitingRecord | undefined = first; r !== undefined; r = r.next) out.push(r)
    }
    return out
  }

  clear(): void {
    for (const r of this.toArray()) r.next = undefined
    this.byHash.clear()
    this.count = 0
  }
}
