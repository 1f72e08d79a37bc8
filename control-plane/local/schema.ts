/**
 * The Local control plane's SQLite schema and its migrations.
 *
 * Objects are stored the way Kubernetes stores them: one row per (kind, name),
 * the object as JSON, and a revision drawn from one store-wide counter (etcd's
 * resourceVersion). Migrations are append-only; each runs once, inside the same
 * IMMEDIATE transaction that records it, so two processes opening a fresh file
 * at once cannot both apply it.
 */
import type Database from 'better-sqlite3'
import { CairnError } from '../../core/errors.js'

interface Migration {
  version: number
  description: string
  sql: string
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'objects keyed by kind and name, store-wide revision counter',
    sql: `
      CREATE TABLE objects (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        body TEXT NOT NULL CHECK (json_valid(body)),
        PRIMARY KEY (kind, name)
      ) WITHOUT ROWID;
      CREATE INDEX objects_snapshot_volume ON objects (json_extract(body, '$.volume'), name) WHERE kind = 'Snapshot';
      CREATE INDEX objects_volume_policy ON objects (json_extract(body, '$.storagePolicy')) WHERE kind = 'Volume';
      CREATE INDEX objects_volume_block_store ON objects (json_extract(body, '$.blockStore')) WHERE kind = 'Volume';
      CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO counters (name, value) VALUES ('revision', 0);
    `,
  },
  {
    version: 2,
    description: 'pins: CIDs garbage collection keeps, per block store',
    sql: `
      CREATE TABLE pins (
        block_store TEXT NOT NULL,
        cid TEXT NOT NULL,
        note TEXT,
        PRIMARY KEY (block_store, cid)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    description: 'volumes: status.readers, the nodes a volume is published to read-only',
    // Bodies are rewritten in place without a new revision: [] is what the field meant before it existed.
    sql: `
      UPDATE objects SET body = json_set(body, '$.status.readers', json('[]'))
        WHERE kind = 'Volume' AND json_type(body, '$.status.readers') IS NULL;
    `,
  },
  {
    version: 4,
    description: 'volumes: status.recoveryPending, set when a writer let go without folding its journal into the head',
    // false is what a volume meant before: no release ever recorded a lagging head.
    sql: `
      UPDATE objects SET body = json_set(body, '$.status.recoveryPending', json('false'))
        WHERE kind = 'Volume' AND json_type(body, '$.status.recoveryPending') IS NULL;
    `,
  },
]

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

/** The file was written by a newer Cairn; opening it here could corrupt it. */
export class SchemaTooNewError extends CairnError {
  override readonly name = 'SchemaTooNewError'
  readonly kind = 'failed-precondition'
}

/**
 * Brings the schema to SCHEMA_VERSION. Returns the version found before migrating
 * (0 for a new file).
 * @throws SchemaTooNewError if the file's schema is newer than this code.
 */
export function migrate(db: Database.Database, nowIso: string): number {
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)`)
    const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null }
    const found = row.v ?? 0
    if (found > SCHEMA_VERSION) {
      throw new SchemaTooNewError(`schema version ${found} is newer than this build's ${SCHEMA_VERSION}; upgrade cairn`)
    }
    const record = db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)')
    for (const m of MIGRATIONS) {
      if (m.version <= found) continue
      db.exec(m.sql)
      record.run(m.version, m.description, nowIso)
    }
    return found
  })
  return run.immediate()
}
