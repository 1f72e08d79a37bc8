/**
 * Rows of the `objects` table as typed objects. Knows nothing of volumes or
 * policies: the control plane above decides what to write, this module only
 * reads and writes whole objects and hands out revisions.
 *
 * better-sqlite3 is synchronous, so inside one process every method runs to
 * completion before another starts; across processes, `write` takes SQLite's
 * write lock up front (BEGIN IMMEDIATE) so a read-check-write sequence can never
 * interleave with another writer.
 */
import Database from 'better-sqlite3'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { assert } from '../../core/errors.js'
import type { Pin, ResourceKind } from '../types.js'
import { migrate } from './schema.js'

/** An object as stored: everything but its revision, which lives in its own column. */
export type Body = Record<string, unknown>

/** The listing filters the schema has an index for. */
export type ListFilter = { kind: 'Snapshot'; volume: string }

export interface ObjectStoreInit {
  path: string
  busyTimeoutMs: number
  /** Recorded with each migration applied. */
  nowIso: string
}

interface Row {
  name: string
  revision: number
  body: string
}

export class ObjectStore {
  readonly db: Database.Database
  /** Schema version the file had before this open migrated it (0: new file). */
  readonly schemaVersionFound: number
  private readonly statements: ReturnType<typeof prepare>

  /** Opens (creating if needed) and migrates the file. */
  constructor(init: ObjectStoreInit) {
    if (init.path !== ':memory:') mkdirSync(dirname(init.path), { recursive: true })
    this.db = new Database(init.path)
    try {
      // busy_timeout first: the pragmas below may themselves wait for another process's lock.
      this.db.pragma(`busy_timeout = ${Math.trunc(init.busyTimeoutMs)}`)
      this.db.pragma('journal_mode = WAL')
      // FULL, not WAL's usual NORMAL: a granted epoch lost to a power cut could be granted twice.
      this.db.pragma('synchronous = FULL')
      this.schemaVersionFound = migrate(this.db, init.nowIso)
      this.statements = prepare(this.db)
    } catch (err) {
      this.db.close()
      throw err
    }
  }

  close(): void {
    this.db.close()
  }

  /** Runs `fn` in one IMMEDIATE transaction: all of it commits, or none. */
  write<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate()
  }

  get<T>(kind: ResourceKind, name: string): T | undefined {
    const row = this.statements.get.get(kind, name) as Row | undefined
    return row === undefined ? undefined : decode<T>(row)
  }

  /** Inserts or replaces the object; returns its new revision. Call inside `write`. */
  put(kind: ResourceKind, name: string, body: Body): string {
    assert(this.db.inTransaction, 'ObjectStore.put outside a write transaction')
    const { value } = this.statements.nextRevision.get() as { value: number }
    const { revision: _drop, ...rest } = body
    this.statements.put.run(kind, name, value, JSON.stringify(rest))
    return String(value)
  }

  /** Returns whether a row was deleted. */
  delete(kind: ResourceKind, name: string): boolean {
    return this.statements.delete.run(kind, name).changes > 0
  }

  /** Up to `limit` objects with names after `after`, by name. */
  list<T>(kind: ResourceKind, after: string, limit: number, filter?: ListFilter): T[] {
    const rows = (
      filter === undefined
        ? this.statements.list.all(kind, after, limit)
        : this.statements.listSnapshotsOf.all(filter.volume, after, limit)
    ) as Row[]
    return rows.map((r) => decode<T>(r))
  }

  /** The block store's pins, ordered by CID. */
  pins(blockStore: string): Pin[] {
    const rows = this.statements.pins.all(blockStore) as { cid: string; note: string | null }[]
    return rows.map((r) => (r.note === null ? { cid: r.cid } : { cid: r.cid, note: r.note }))
  }

  /** Inserts or replaces one pin. Call inside `write`. */
  putPin(blockStore: string, pin: Pin): void {
    assert(this.db.inTransaction, 'ObjectStore.putPin outside a write transaction')
    this.statements.putPin.run(blockStore, pin.cid, pin.note ?? null)
  }

  /** Returns whether the pin existed. */
  deletePin(blockStore: string, cid: string): boolean {
    return this.statements.deletePin.run(blockStore, cid).changes > 0
  }

  /** Drops every pin of a block store (it is being deleted). */
  deletePinsOf(blockStore: string): void {
    this.statements.deletePinsOf.run(blockStore)
  }

  /** Names of up to `limit` volumes whose `field` is `value` (for "in use" checks). */
  volumesUsing(field: 'storagePolicy' | 'blockStore', value: string, limit: number): string[] {
    const statement = field === 'storagePolicy' ? this.statements.volumesUsingPolicy : this.statements.volumesUsingStore
    return (statement.all(value, limit) as { name: string }[]).map((r) => r.name)
  }
}

function prepare(db: Database.Database) {
  return {
    get: db.prepare('SELECT name, revision, body FROM objects WHERE kind = ? AND name = ?'),
    put: db.prepare('INSERT OR REPLACE INTO objects (kind, name, revision, body) VALUES (?, ?, ?, ?)'),
    delete: db.prepare('DELETE FROM objects WHERE kind = ? AND name = ?'),
    nextRevision: db.prepare("UPDATE counters SET value = value + 1 WHERE name = 'revision' RETURNING value"),
    list: db.prepare('SELECT name, revision, body FROM objects WHERE kind = ? AND name > ? ORDER BY name LIMIT ?'),
    listSnapshotsOf: db.prepare(
      `SELECT name, revision, body FROM objects WHERE kind = 'Snapshot' AND json_extract(body, '$.volume') = ?
       AND name > ? ORDER BY name LIMIT ?`,
    ),
    pins: db.prepare('SELECT cid, note FROM pins WHERE block_store = ? ORDER BY cid'),
    putPin: db.prepare('INSERT OR REPLACE INTO pins (block_store, cid, note) VALUES (?, ?, ?)'),
    deletePin: db.prepare('DELETE FROM pins WHERE block_store = ? AND cid = ?'),
    deletePinsOf: db.prepare('DELETE FROM pins WHERE block_store = ?'),
    volumesUsingPolicy: db.prepare(
      "SELECT name FROM objects WHERE kind = 'Volume' AND json_extract(body, '$.storagePolicy') = ? ORDER BY name LIMIT ?",
    ),
    volumesUsingStore: db.prepare(
      "SELECT name FROM objects WHERE kind = 'Volume' AND json_extract(body, '$.blockStore') = ? ORDER BY name LIMIT ?",
    ),
  }
}

function decode<T>(row: Row): T {
  const body = JSON.parse(row.body) as Body
  assert(body.name === row.name, `stored object ${row.name} names itself ${String(body.name)}`)
  return { ...body, revision: String(row.revision) } as T
}
