/**
 * The segment store's index: one better-sqlite3 database saying which shard lives
 * where, and how full each segment is. It is the truth about what is stored;
 * segment bytes that no row points at are dead. Rows are keyed by their location
 * (segment, offset), so the rows of new shards are appended in order instead of
 * inserted at random keys, and an in-memory map from address to location finds them.
 * See docs/adr/0003-shard-store.md for why puts commit with synchronous=NORMAL and
 * everything else with FULL, and "segment-ordered index" for the layout.
 */
import Database from 'better-sqlite3'
import type { ShardAddress } from '../core/shard.js'
import { AddressLocations } from './address-locations.js'
import { DataDirError } from './shard-store.js'

/**
 * Bumped when the schema changes; a store refuses a directory from a later version and
 * migrates an earlier one. 1: rows keyed by (cid, idx). 2: rows keyed by location.
 */
export const INDEX_SCHEMA_VERSION = '2'

/** A location is segment × 2^32 + offset: offsets stay below 2^32, ids below 2^21 (so it stays a safe integer). */
export const SEGMENT_STRIDE = 2 ** 32
export const SEGMENT_ID_LIMIT = 2 ** 21

export function locationOf(segment: number, offset: number): number {
  return segment * SEGMENT_STRIDE + offset
}

/** The segment and offset a location names. */
export function splitLocation(loc: number): { segment: number; offset: number } {
  const segment = Math.floor(loc / SEGMENT_STRIDE)
  return { segment, offset: loc - segment * SEGMENT_STRIDE }
}

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
  /** `addressHash(cid, index)`. */
  hash: number
  offsetBytes: number
  lengthBytes: number
  lastPutMs: number
  /**
   * The writer found no row for this shard when it wrote it, so the commit inserts
   * without looking for a row to replace: the only kind a connection without the
   * address map (the index worker) can commit.
   */
  fresh?: boolean
}

const tables = `
CREATE TABLE IF NOT EXISTS segments (
  id INTEGER PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('active', 'sealed', 'compacting')),
  size_bytes INTEGER NOT NULL,
  live_bytes INTEGER NOT NULL
);
`

/** Rows in location order; \`hash\` rebuilds the address map at open without hashing every CID. */
const shardsTable = (name: string): string => `
CREATE TABLE ${name} (
  loc INTEGER PRIMARY KEY,
  hash INTEGER NOT NULL,
  cid BLOB NOT NULL,
  idx INTEGER NOT NULL,
  length INTEGER NOT NULL,
  last_put_ms INTEGER NOT NULL,
  corrupt INTEGER NOT NULL DEFAULT 0
);
`

type RawRow = [loc: number, cid: Buffer, idx: number, length: number, lastPutMs: number, corrupt: number]

const rowColumns = 'loc, cid, idx, length, last_put_ms, corrupt'

function toShardRow(raw: RawRow): ShardRow {
  const { segment, offset } = splitLocation(raw[0])
  return { cid: raw[1], idx: raw[2], segment, offset, length: raw[3], lastPutMs: raw[4], corrupt: raw[5] !== 0 }
}

/** Map changes of a transaction, applied only once it committed. */
type MapChange = [op: 'add' | 'delete', hash: number, loc: number] | [op: 'move', hash: number, from: number, to: number]

export class SegmentIndex {
  private readonly db: Database.Database
  private readonly stmts

  /** Holds `<path>.lock` exclusively while open: a second store on the directory is refused. */
  private readonly lock: Database.Database | undefined

  /** Address → location of every row; only on the connection that opened with `addressMap`. */
  private readonly addresses: AddressLocations | undefined

  /**
   * Opens (creating or migrating if needed) the index.
   * @param options.lockFile take the directory's exclusive lock (`<path>.lock`); false only
   *   for a second connection of the same store (its index worker). @default true
   * @param options.addressMap load every row's address into memory, which lookups,
   *   deletes and replacing commits need; false for the index worker, which only appends
   *   fresh rows. @default true
   */
  constructor(path: string, options: { lockFile?: boolean; addressMap?: boolean } = {}) {
    try {
      this.lock = options.lockFile === false ? undefined : lockDirectory(`${path}.lock`)
      // Two connections of one store share the file (the index worker writes, this one
      // reads and makes the rarer durable changes): a writer waits for the other's commit.
      this.db = new Database(path, { timeout: 10_000 })
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = NORMAL')
      // Every automatic checkpoint fsyncs the WAL and the database on the committing
      // thread: checkpoint every 8192 pages (32 MiB of WAL) instead of SQLite's 1000.
      this.db.pragma('wal_autocheckpoint = 8192')
      this.db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID')
      this.db.exec(tables)
      this.prepareSchema()
    } catch (err) {
      this.lock?.close()
      if (err instanceof DataDirError) throw err
      throw new DataDirError(`cannot open shard index ${path}: ${(err as Error).message}`, { cause: err })
    }
    const db = this.db
    this.stmts = {
      rowAt: db.prepare(`SELECT ${rowColumns} FROM shards WHERE loc = ?`).raw(true),
      insert: db.prepare('INSERT INTO shards (loc, hash, cid, idx, length, last_put_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (loc) DO NOTHING'),
      touch: db.prepare('UPDATE shards SET last_put_ms = max(last_put_ms, ?) WHERE loc = ? AND idx = ? AND cid = ?'),
      removeAt: db.prepare('DELETE FROM shards WHERE loc = ?'),
      markCorrupt: db.prepare('UPDATE shards SET corrupt = 1 WHERE loc = ? AND idx = ? AND cid = ?'),
      segments: db.prepare('SELECT id, state, size_bytes AS sizeBytes, live_bytes AS liveBytes FROM segments ORDER BY id'),
      // max(): flushes of one segment commit in order, but a committed size must never go back.
      setSegment: db.prepare('UPDATE segments SET size_bytes = max(size_bytes, ?), live_bytes = live_bytes + ? WHERE id = ?'),
      addLive: db.prepare('UPDATE segments SET live_bytes = live_bytes + ? WHERE id = ?'),
      insertSegment: db.prepare('INSERT INTO segments (id, state, size_bytes, live_bytes) VALUES (?, ?, 0, 0)'),
      setState: db.prepare('UPDATE segments SET state = ? WHERE id = ?'),
      deleteSegment: db.prepare('DELETE FROM segments WHERE id = ?'),
      rowsAfter: db.prepare(`SELECT ${rowColumns} FROM shards WHERE loc > ? ORDER BY loc LIMIT ?`).raw(true),
      // A prefix of only 0xff bytes has no end (null): every CID from it on matches.
      prefixWindow: db.prepare(
        `SELECT ${rowColumns} FROM (SELECT ${rowColumns} FROM shards WHERE loc > ? ORDER BY loc LIMIT ?) WHERE cid >= ? AND (? IS NULL OR cid < ?) ORDER BY loc LIMIT ?`,
      ).raw(true),
      windowEnd: db.prepare('SELECT count(*) AS n, max(loc) AS last FROM (SELECT loc FROM shards WHERE loc > ? ORDER BY loc LIMIT ?)'),
      rowsBetween: db.prepare(`SELECT ${rowColumns} FROM shards WHERE loc >= ? AND loc < ? ORDER BY loc`).raw(true),
      countBetween: db.prepare('SELECT count(*) AS n FROM shards WHERE loc >= ? AND loc < ?'),
      move: db.prepare('UPDATE shards SET loc = ? WHERE loc = ? AND idx = ? AND cid = ?'),
      dropAt: db.prepare('DELETE FROM shards WHERE loc = ? AND idx = ? AND cid = ?'),
      counts: db.prepare('SELECT count(*) AS n, coalesce(sum(length), 0) AS bytes, coalesce(sum(corrupt), 0) AS corrupt FROM shards'),
    }
    if (options.addressMap !== false) this.addresses = this.loadAddresses()
  }

  /** Creates the shards table of a new index, migrates an older one, refuses a newer one. */
  private prepareSchema(): void {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined
    if (row === undefined) {
      this.db.transaction(() => {
        this.db.exec(shardsTable('shards'))
        this.db.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?)").run(INDEX_SCHEMA_VERSION)
      })()
    } else if (row.value === '1') {
      this.migrateFromVersion1()
    } else if (row.value !== INDEX_SCHEMA_VERSION) {
      throw new DataDirError(`shard index schema version ${row.value}, this build reads ${INDEX_SCHEMA_VERSION}`)
    }
  }

  /**
   * Version 1 keyed rows by (cid, idx) with a second index on (segment, offset): copies
   * them into location order in one durable transaction (a crash leaves version 1).
   */
  private migrateFromVersion1(): void {
    this.db.function('cairn_address_hash', { deterministic: true }, (cid: unknown, idx: unknown) => addressHash(cid as Buffer, Number(idx)))
    this.durably(() => {
      this.db.exec(shardsTable('shards_v2'))
      this.db.exec(`
        INSERT INTO shards_v2 (loc, hash, cid, idx, length, last_put_ms, corrupt)
          SELECT segment * ${SEGMENT_STRIDE} + offset, cairn_address_hash(cid, idx), cid, idx, length, last_put_ms, corrupt
          FROM shards ORDER BY segment, offset;
        DROP INDEX IF EXISTS shards_by_segment;
        DROP TABLE shards;
        ALTER TABLE shards_v2 RENAME TO shards;
      `)
      this.db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(INDEX_SCHEMA_VERSION)
    })
  }

  /** Reads every row's (hash, location) into a new map: one sequential pass over the table. */
  private loadAddresses(): AddressLocations {
    const { n } = this.db.prepare('SELECT count(*) AS n FROM shards').get() as { n: number }
    const map = new AddressLocations(n)
    for (const [hash, loc] of this.db.prepare('SELECT hash, loc FROM shards').raw(true).iterate() as IterableIterator<[number, number]>) map.add(hash, loc)
    return map
  }

  /** False once closed. */
  get open(): boolean {
    return this.db.open
  }

  /** Memory the address map takes (0 without one). */
  get addressMapBytes(): number {
    return this.addresses?.sizeBytes ?? 0
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

  private get map(): AddressLocations {
    if (this.addresses === undefined) throw new DataDirError('this index connection has no address map')
    return this.addresses
  }

  /** False if no row can hold this address hash: a put of a new shard needs no lookup. */
  mayHold(hash: number): boolean {
    return this.map.has(hash)
  }

  /** The row of `address`, found through the address map and checked against the row's own address. */
  lookup(address: ShardAddress, hash = addressHash(address.chunkCid, address.index)): ShardRow | undefined {
    for (const loc of this.map.locations(hash)) {
      const raw = this.stmts.rowAt.get(loc) as RawRow | undefined
      if (raw !== undefined && raw[2] === address.index && Buffer.compare(raw[1], address.chunkCid) === 0) return toShardRow(raw)
    }
    return undefined
  }

  /** Refreshes stored shards' last-put times (idempotent re-puts), in one transaction. */
  touchAll(addresses: readonly ShardAddress[], nowMs: number): void {
    this.db.transaction(() => {
      for (const a of addresses) {
        const cid = asBuffer(a.chunkCid)
        // A candidate at another address is left alone by the statement's own check.
        for (const loc of this.map.locations(addressHash(cid, a.index))) this.stmts.touch.run(nowMs, loc, a.index, cid)
      }
    })()
  }

  segments(): SegmentRow[] {
    return this.stmts.segments.all() as SegmentRow[]
  }

  /**
   * Indexes records whose bytes are already fsynced in `segmentId`, and moves its
   * committed size to `sizeBytes`, in one transaction. A record replacing a corrupt
   * copy takes the copy's live bytes away from the copy's segment. Records already
   * indexed (a retried flush) are left as they are.
   */
  commitWrites(segmentId: number, sizeBytes: number, records: readonly NewRecord[]): Replaced {
    const changes: MapChange[] = []
    const replaced = this.db.transaction(() => {
      const replaced: Replaced = { count: 0, bytes: 0, corrupt: 0 }
      let liveDelta = 0
      for (const r of records) {
        const cid = asBuffer(r.cid)
        const loc = locationOf(segmentId, r.offsetBytes)
        const previous = r.fresh === true ? undefined : this.lookup({ chunkCid: r.cid, index: r.index }, r.hash)
        if (previous !== undefined && (previous.segment !== segmentId || previous.offset !== r.offsetBytes)) {
          this.stmts.removeAt.run(locationOf(previous.segment, previous.offset))
          this.stmts.addLive.run(-previous.length, previous.segment)
          changes.push(['delete', r.hash, locationOf(previous.segment, previous.offset)])
          replaced.count += 1
          replaced.bytes += previous.length
          if (previous.corrupt) replaced.corrupt += 1
        }
        if (this.stmts.insert.run(loc, r.hash, cid, r.index, r.lengthBytes, r.lastPutMs).changes === 0) continue
        liveDelta += r.lengthBytes
        changes.push(['add', r.hash, loc])
      }
      this.stmts.setSegment.run(sizeBytes, liveDelta, segmentId)
      return replaced
    })()
    this.applyMapChanges(changes)
    return replaced
  }

  /** Adds to the address map the records another connection (the index worker) committed. */
  noteCommitted(segmentId: number, records: readonly NewRecord[]): void {
    for (const r of records) this.addresses?.add(r.hash, locationOf(segmentId, r.offsetBytes))
  }

  /** Deletes shards put before `cutoffMs`, durably; returns how many rows went away and the bytes they held. */
  deleteShards(addresses: readonly ShardAddress[], cutoffMs: number): { count: number; bytes: number; corrupt: number } {
    const changes: MapChange[] = []
    const gone = this.durably(() => {
      let count = 0
      let bytes = 0
      let corrupt = 0
      for (const a of addresses) {
        const hash = addressHash(a.chunkCid, a.index)
        const row = this.lookup(a, hash)
        if (row === undefined || row.lastPutMs >= cutoffMs) continue
        const loc = locationOf(row.segment, row.offset)
        this.stmts.removeAt.run(loc)
        this.stmts.addLive.run(-row.length, row.segment)
        changes.push(['delete', hash, loc])
        count += 1
        bytes += row.length
        if (row.corrupt) corrupt += 1
      }
      return { count, bytes, corrupt }
    })
    this.applyMapChanges(changes)
    return gone
  }

  /** Flags the row still pointing at (segment, offset) as corrupt; returns whether it did. */
  markCorrupt(row: ShardRow): boolean {
    return this.stmts.markCorrupt.run(locationOf(row.segment, row.offset), row.idx, row.cid).changes > 0
  }

  /**
   * Up to `limit` shards after location `afterLoc` in location order. Rows only ever move
   * to a later location (compaction copies into a new segment, a replacing put appends),
   * so a walk page by page sees every shard that stays stored throughout it, and may see
   * one that moved twice.
   *
   * With `prefix`, only shards whose CID starts with it, found by filtering the next
   * `scanRows` rows (there is no CID order to seek in): a call's work stays bounded
   * however rare the prefix. `scannedThrough` is then the last location scanned when the
   * window was full (the walk goes on from there), undefined when the scan reached the end.
   */
  list(afterLoc: number | undefined, prefix: Uint8Array | undefined, limit: number, scanRows: number): { rows: ShardRow[]; scannedThrough?: number } {
    const after = afterLoc ?? 0
    if (prefix === undefined || prefix.length === 0) {
      return { rows: (this.stmts.rowsAfter.all(after, limit) as RawRow[]).map(toShardRow) }
    }
    const end = prefixEnd(prefix) ?? null
    const rows = (this.stmts.prefixWindow.all(after, scanRows, asBuffer(prefix), end, end, limit) as RawRow[]).map(toShardRow)
    const window = this.stmts.windowEnd.get(after, scanRows) as { n: number; last: number | null }
    return window.n < scanRows || window.last === null ? { rows } : { rows, scannedThrough: window.last }
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
    return (this.stmts.rowsBetween.all(locationOf(segmentId, 0), locationOf(segmentId + 1, 0)) as RawRow[]).map(toShardRow)
  }

  /**
   * Points the rows that still reference `oldId` at their copies in `newId`, drops rows
   * whose old copy was corrupt, seals `newId` and forgets `oldId`: one durable
   * transaction, after which the old file may be unlinked.
   * @returns the dropped rows that were still indexed.
   */
  finishCompaction(oldId: number, newId: number, sizeBytes: number, moved: ReadonlyArray<{ row: ShardRow; newOffset: number }>, dropped: readonly ShardRow[]): ShardRow[] {
    const changes: MapChange[] = []
    const removed = this.durably(() => {
      let live = 0
      for (const { row, newOffset } of moved) {
        const from = locationOf(oldId, row.offset)
        const to = locationOf(newId, newOffset)
        if (this.stmts.move.run(to, from, row.idx, row.cid).changes === 0) continue
        live += row.length
        changes.push(['move', addressHash(row.cid, row.idx), from, to])
      }
      const removed = dropped.filter((row) => this.stmts.dropAt.run(locationOf(oldId, row.offset), row.idx, row.cid).changes > 0)
      for (const row of removed) changes.push(['delete', addressHash(row.cid, row.idx), locationOf(oldId, row.offset)])
      const left = this.stmts.countBetween.get(locationOf(oldId, 0), locationOf(oldId + 1, 0)) as { n: number }
      if (left.n !== 0) throw new DataDirError(`compaction of segment ${oldId} left ${left.n} rows behind`)
      this.db.prepare("UPDATE segments SET state = 'sealed', size_bytes = ?, live_bytes = ? WHERE id = ?").run(sizeBytes, live, newId)
      this.stmts.deleteSegment.run(oldId)
      return removed
    })
    this.applyMapChanges(changes)
    return removed
  }

  private applyMapChanges(changes: readonly MapChange[]): void {
    const map = this.addresses
    if (map === undefined) return
    for (const c of changes) {
      if (c[0] === 'move') map.move(c[1], c[2], c[3])
      else if (c[0] === 'add') map.add(c[1], c[2])
      else map.delete(c[1], c[2])
    }
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

/** FNV-1a over the CID bytes and the index: CIDs may be chosen by a client, so every byte counts. */
export function addressHash(cid: Uint8Array, index: number): number {
  return addressHashOf(cidHash(cid), index)
}

/** The CID's part of `addressHash`: hash a CID once for the addresses of all its shards. */
export function cidHash(cid: Uint8Array): number {
  let h = 0x811c9dc5
  for (let i = 0; i < cid.length; i++) h = Math.imul(h ^ (cid[i] as number), 0x01000193)
  return h
}

/** `addressHash` of the address (cid, index), given `cidHash(cid)`. */
export function addressHashOf(cidHashValue: number, index: number): number {
  return mix32(Math.imul(cidHashValue ^ index, 0x01000193))
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
  /** Six numbers a record: index, offsetBytes, lengthBytes, lastPutMs, fresh (0/1), hash. */
  numbers: Float64Array
}

const PACKED_NUMBERS = 6

export function packRecords(records: readonly NewRecord[]): PackedRecords {
  let total = 0
  for (const r of records) total += r.cid.length
  const cids = new Uint8Array(total)
  const cidEnds = new Uint32Array(records.length)
  const numbers = new Float64Array(records.length * PACKED_NUMBERS)
  let at = 0
  records.forEach((r, i) => {
    cids.set(r.cid, at)
    at += r.cid.length
    cidEnds[i] = at
    const n = i * PACKED_NUMBERS
    numbers[n] = r.index
    numbers[n + 1] = r.offsetBytes
    numbers[n + 2] = r.lengthBytes
    numbers[n + 3] = r.lastPutMs
    numbers[n + 4] = r.fresh === true ? 1 : 0
    numbers[n + 5] = r.hash
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
    const n = i * PACKED_NUMBERS
    records[i] = {
      cid: cids.subarray(start, end),
      index: numbers[n] as number,
      offsetBytes: numbers[n + 1] as number,
      lengthBytes: numbers[n + 2] as number,
      lastPutMs: numbers[n + 3] as number,
      fresh: numbers[n + 4] === 1,
      hash: numbers[n + 5] as number,
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
