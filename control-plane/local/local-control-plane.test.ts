import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { silentLogger } from '../../core/logger.js'
import { controlPlaneConformance, type ConformanceHarness } from '../conformance.js'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { PINS_MAX, type ControlPlane } from '../types.js'
import { createLocalControlPlane, type LocalControlPlane } from './local-control-plane.js'
import { SCHEMA_VERSION } from './schema.js'

const TOKEN_TTL_MS = 300_000
const dirs: string[] = []
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function tempPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-cp-'))
  dirs.push(dir)
  return join(dir, 'state', 'control-plane.sqlite')
}

/** A harness over a fresh file, with a clock the suite can move to expire tokens. */
async function localHarness(): Promise<ConformanceHarness> {
  const path = tempPath()
  let nowMs = Date.parse('2026-01-01T00:00:00Z')
  const open = async () => {
    const cp = createLocalControlPlane({ path, continueTokenTtlMs: TOKEN_TTL_MS }, { logger: silentLogger(), clock: () => nowMs })
    await cp.start()
    return cp
  }
  const harness: ConformanceHarness = {
    cp: await open(),
    cleanup: () => harness.cp.stop(),
    reopen: async () => {
      await harness.cp.stop()
      harness.cp = await open()
      return harness.cp
    },
    expireContinueTokens: async () => {
      nowMs += TOKEN_TTL_MS + 1
    },
  }
  return harness
}

controlPlaneConformance('local (better-sqlite3 file)', localHarness)

controlPlaneConformance('local (in memory, no restart hooks)', async () => {
  const cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
  await cp.start()
  return { cp, cleanup: () => cp.stop() }
})

async function opened(path: string): Promise<LocalControlPlane> {
  const cp = createLocalControlPlane({ path }, { logger: silentLogger() })
  await cp.start()
  return cp
}

async function seed(cp: ControlPlane): Promise<void> {
  await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
  await cp.createStoragePolicy({ name: 'p', dataShards: 2, parityShards: 1 })
  await cp.createVolume({ name: 'v', blockStore: 'bs', storagePolicy: 'p', sizeBytes: 1 << 20 })
}

describe('local control plane file', () => {
  it('uses WAL and records every schema migration applied', async () => {
    const path = tempPath()
    const cp = await opened(path)
    await cp.stop()
    const db = new Database(path, { readonly: true })
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
      const versions = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as { version: number }[]
      assert.deepEqual(versions.map((r) => r.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1))
    } finally {
      db.close()
    }
    const again = await opened(path)
    await again.stop()
  })

  /**
   * A seeded file turned back into what the build before `migration` left (volumes without
   * `status.<field>`, the migration not applied), then opened by this build.
   */
  async function openedFromBefore(migration: number, field: string): Promise<LocalControlPlane> {
    const path = tempPath()
    const cp = await opened(path)
    await seed(cp)
    await cp.stop()
    const db = new Database(path)
    db.prepare(`UPDATE objects SET body = json_remove(body, '$.status.${field}') WHERE kind = 'Volume'`).run()
    db.prepare('DELETE FROM schema_migrations WHERE version >= ?').run(migration)
    db.close()
    return opened(path)
  }

  it('migrates a version-3 file: volumes written before recoveryPending existed read as having nothing to recover', async () => {
    const again = await openedFromBefore(4, 'recoveryPending')
    try {
      const v = await again.getVolume('v')
      assert.equal(v.status.recoveryPending, false)
      const held = await again.acquireEpoch('v', 'node-a', v.status.epoch)
      assert.equal((await again.releaseAttachment('v', 'node-a', held.status.epoch, { headCurrent: false })).status.recoveryPending, true)
    } finally {
      await again.stop()
    }
  })

  it('migrates a version-2 file: volumes written before readers existed read as having none, and can take them', async () => {
    const again = await openedFromBefore(3, 'readers')
    try {
      const v = await again.getVolume('v')
      assert.deepEqual(v.status.readers, [])
      assert.deepEqual((await again.addReader('v', 'node-a')).status.readers, ['node-a'])
    } finally {
      await again.stop()
    }
  })

  it('refuses a file written by a newer schema, and leaves it untouched', async () => {
    const path = tempPath()
    const cp = await opened(path)
    await seed(cp)
    await cp.stop()
    const db = new Database(path)
    db.prepare("INSERT INTO schema_migrations VALUES (?, 'from the future', '2030-01-01T00:00:00Z')").run(SCHEMA_VERSION + 1)
    db.close()
    const newer = createLocalControlPlane({ path }, { logger: silentLogger() })
    await assert.rejects(newer.start(), { name: 'SchemaTooNewError', kind: 'failed-precondition' })
    const check = new Database(path, { readonly: true })
    const row = check.prepare("SELECT count(*) AS n FROM objects WHERE kind = 'Volume'").get() as { n: number }
    check.close()
    assert.equal(row.n, 1)
  })

  it('a stopped control plane cannot be restarted; a new one over the same file sees everything', async () => {
    const path = tempPath()
    const cp = await opened(path)
    await seed(cp)
    const v = await cp.acquireEpoch('v', 'node-a', 0)
    await cp.stop()
    await assert.rejects(cp.start(), { name: 'ShuttingDownError' })
    const again = await opened(path)
    assert.deepEqual(await again.getVolume('v'), v)
    await again.stop()
  })

  it('two instances in one process over one file see each other and CAS against each other', async () => {
    const path = tempPath()
    const a = await opened(path)
    const b = await opened(path)
    try {
      await seed(a)
      const fromB = await b.getVolume('v')
      const won = await a.updateVolumeStatus('v', fromB.revision, { health: 'healthy' })
      await assert.rejects(b.updateVolumeStatus('v', fromB.revision, { health: 'failed' }), { name: 'ConflictError' })
      assert.deepEqual(await b.getVolume('v'), won)
    } finally {
      await a.stop()
      await b.stop()
    }
  })
})

interface Worker {
  child: ChildProcessWithoutNullStreams
  next(): Promise<Record<string, unknown>>
}

function startWorker(path: string, nodeId: string): Worker {
  const script = fileURLToPath(new URL('./epoch-race-worker.js', import.meta.url))
  const child = spawn(process.execPath, [script, path, 'v', nodeId], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  return {
    child,
    async next() {
      const line = await lines.next()
      if (line.done === true) throw new Error(`worker ${nodeId} exited: ${stderr}`)
      return JSON.parse(line.value) as Record<string, unknown>
    },
  }
}

describe('local control plane across OS processes', () => {
  it('two processes racing acquireEpoch: exactly one wins each round, epochs strictly increase', async () => {
    const path = tempPath()
    const cp = await opened(path)
    await seed(cp)
    await cp.stop()
    const workers = [startWorker(path, 'node-a'), startWorker(path, 'node-b')]
    try {
      for (const w of workers) assert.deepEqual(await w.next(), { ready: true })
      let epoch = 0
      for (let round = 0; round < 60; round++) {
        for (const w of workers) w.child.stdin.write(`${epoch}\n`)
        const answers = await Promise.all(workers.map((w) => w.next()))
        const winners = answers.flatMap((a, i) => (a.won === true ? [i] : []))
        assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(answers)}`)
        const loser = answers.find((a) => a.won !== true)!
        assert.equal(loser.error, 'ConflictError', `round ${round}`)
        const granted = answers[winners[0]!]!.epoch as number
        assert.ok(granted > epoch, `round ${round}: ${granted} > ${epoch}`)
        epoch = granted
      }
      const check = await opened(path)
      const v = await check.getVolume('v')
      await check.stop()
      assert.equal(v.status.epoch, epoch)
      assert.equal(v.status.attachment?.epoch, epoch)
    } finally {
      for (const w of workers) w.child.stdin.end()
      await Promise.all(workers.map((w) => new Promise((resolve) => (w.child.exitCode !== null ? resolve(null) : w.child.once('exit', resolve)))))
    }
  })
})

describe('local control plane pins', () => {
  const rawCid = async (seed: string): Promise<string> =>
    CID.create(1, 0x55, await sha256.digest(new TextEncoder().encode(seed))).toString()

  it('holds at most PINS_MAX pins per block store and refuses one more with FailedPreconditionError', async () => {
    const cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
    await cp.start()
    try {
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      for (let i = 0; i < PINS_MAX; i++) await cp.addPin('bs', { cid: await rawCid(`pin-${i}`) })
      await assert.rejects(cp.addPin('bs', { cid: await rawCid('one-more') }), { name: 'FailedPreconditionError' })
      const first = (await cp.listPins('bs'))[0]!
      assert.deepEqual(await cp.addPin('bs', first), first, 'pinning a pinned CID at the limit is still idempotent')
      assert.equal((await cp.listPins('bs')).length, PINS_MAX)
    } finally {
      await cp.stop()
    }
  })

  it('deleting a block store drops its pins, so a new one of the same name starts with none', async () => {
    const cp = createLocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
    await cp.start()
    try {
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      await cp.addPin('bs', { cid: await rawCid('a') })
      await cp.deleteBlockStore('bs')
      await cp.createBlockStore({ name: 'bs', hostPath: '/data' })
      assert.deepEqual(await cp.listPins('bs'), [])
    } finally {
      await cp.stop()
    }
  })
})
