import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, open, readdir, rm, stat, truncate, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status as Status, type ServiceError } from '@grpc/grpc-js'
import type { CairnError } from '../../core/errors.js'
import type { StorageNode } from '../daemon.js'
import { JournalClient } from './journal-client.js'
import type { StoredRecord } from './record.js'
import { hasJournal, seededBytes, startInProcessNode } from './testing.js'

let dir: string
let node: StorageNode
let client: JournalClient

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-journal-svc-'))
  node = await startInProcessNode(dir)
  client = new JournalClient({ address: node.grpcAddress() })
})

after(async () => {
  client.close()
  await node.stop()
  await rm(dir, { recursive: true, force: true })
})

function rec(seq: number, epoch = 1, bytes = 1000): StoredRecord {
  return { seq, epoch, op: 1, payload: seededBytes(bytes, seq * 31 + epoch) }
}

/** Sends the records on one Append stream; resolves with the final ack once it covers the last seq, or rejects with the stream's error. */
function appendAll(uid: string, epoch: number, batches: StoredRecord[][], c = client): Promise<number> {
  const last = batches.flat().at(-1)?.seq ?? 0
  return new Promise<number>((resolve, reject) => {
    const stream = c.openAppendStream(uid, epoch, {
      onAck: (seq) => {
        if (seq >= last) {
          stream.cancel()
          resolve(seq)
        }
      },
      onError: reject,
    })
    for (const batch of batches) stream.send(batch)
  })
}

function assertSame(actual: readonly StoredRecord[], expected: readonly StoredRecord[]): void {
  assert.deepEqual(
    actual.map((r) => [r.seq, r.epoch, r.op, Buffer.from(r.payload).toString('hex')]),
    expected.map((r) => [r.seq, r.epoch, r.op, Buffer.from(r.payload).toString('hex')]),
  )
}

function codeOf(err: unknown): number | undefined {
  return ((err as CairnError).cause as ServiceError | undefined)?.code
}

test('append, read, checkpoint and re-open round trip; the checkpoint trims whole segments only', async () => {
  const uid = 'vol-roundtrip'
  const opened = await client.open(uid, 1)
  assert.deepEqual([opened.highestEpoch, opened.checkpoint, opened.lastSeq, opened.records.length], [1, null, 0, 0])
  const records = Array.from({ length: 200 }, (_, i) => rec(i + 1))
  const batches = Array.from({ length: 20 }, (_, b) => records.slice(b * 10, b * 10 + 10))
  assert.ok((await appendAll(uid, 1, batches)) >= 200)
  assertSame(await client.read(uid, 1, 0), records)
  assertSame(await client.read(uid, 1, 150), records.slice(149))

  const segmentsBefore = (await readdir(join(dir, 'journal', uid))).filter((n) => n.endsWith('.log'))
  assert.ok(segmentsBefore.length >= 3, `200 KB of records roll 64 KiB segments (${segmentsBefore.length})`)
  const cp = { rootCid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', sizeBytes: 1 << 20, seq: 120 }
  assert.deepEqual(await client.checkpoint(uid, 1, cp), cp)
  const segmentsAfter = (await readdir(join(dir, 'journal', uid))).filter((n) => n.endsWith('.log')).sort()
  assert.ok(segmentsAfter.length < segmentsBefore.length, 'covered segments were deleted')
  assert.ok(Number(segmentsAfter[0]!.slice(0, 16)) <= 121, 'the segment holding seq 121 was kept')
  assertSame(await client.read(uid, 1, 0), records.slice(120))

  const reopened = await client.open(uid, 1)
  assert.deepEqual(reopened.checkpoint, cp)
  assert.equal(reopened.lastSeq, 200)
  assertSame(reopened.records, records.slice(120))
  // An older checkpoint changes nothing.
  assert.deepEqual(await client.checkpoint(uid, 1, { rootCid: null, sizeBytes: 0, seq: 50 }), cp)
})

test('a higher epoch fences the lower one on every call, and nothing it sends afterwards is stored', async () => {
  const uid = 'vol-fence'
  await client.open(uid, 1)
  await appendAll(uid, 1, [[rec(1), rec(2)]])
  await client.open(uid, 2)
  await assert.rejects(appendAll(uid, 1, [[rec(3)]]), (err: CairnError) => err.name === 'EpochFencedError' && codeOf(err) === Status.FAILED_PRECONDITION)
  await assert.rejects(client.checkpoint(uid, 1, { rootCid: null, sizeBytes: 0, seq: 2 }), { name: 'EpochFencedError' })
  await assert.rejects(client.open(uid, 1), { name: 'EpochFencedError' })
  await assert.rejects(client.read(uid, 1, 0), { name: 'EpochFencedError' })
  await assert.rejects(client.drop(uid, 1), { name: 'EpochFencedError' })
  await assert.rejects(appendAll(uid, 3, [[rec(3, 3)]]), { name: 'JournalNotOpenError' })
  assertSame(await client.read(uid, 2, 0), [rec(1), rec(2)])
  // The new epoch continues the sequence.
  await appendAll(uid, 2, [[rec(3, 2)]])
  assertSame((await client.open(uid, 2)).records, [rec(1), rec(2), rec(3, 2)])
})

test('malformed requests get the right codes and leave stored records intact', async () => {
  const uid = 'vol-malformed'
  await client.open(uid, 1)
  const stored = [rec(1), rec(2), rec(3)]
  await appendAll(uid, 1, [stored])
  const cases: Array<{ name: string; run: () => Promise<unknown>; code: Status; error: string }> = [
    { name: 'uid with a path', run: () => client.open('../etc', 1), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'empty uid', run: () => client.checkpoint('', 1, { rootCid: null, sizeBytes: 0, seq: 0 }), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'epoch 0', run: () => client.open(uid, 0), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'epoch past 2^53', run: () => client.open(uid, 2 ** 60), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'seq gap', run: () => appendAll(uid, 1, [[rec(5)]]), code: Status.FAILED_PRECONDITION, error: 'JournalSequenceError' },
    { name: 'gap inside a message', run: () => appendAll(uid, 1, [[rec(4), rec(6)]]), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'repeat with other content', run: () => appendAll(uid, 1, [[{ ...rec(2), payload: seededBytes(1000, 9) }]]), code: Status.FAILED_PRECONDITION, error: 'JournalConflictError' },
    { name: 'oversize record', run: () => appendAll(uid, 1, [[{ ...rec(4), payload: new Uint8Array(256 * 1024 + 1) }]]), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'op 0', run: () => appendAll(uid, 1, [[{ ...rec(4), op: 0 }]]), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'record epoch above the stream', run: () => appendAll(uid, 1, [[rec(4, 2)]]), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'record epoch 0', run: () => appendAll(uid, 1, [[rec(4, 0)]]), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'checkpoint root not a CID', run: () => client.checkpoint(uid, 1, { rootCid: 'not-a-cid', sizeBytes: 0, seq: 1 }), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
  ]
  for (const c of cases) {
    await assert.rejects(c.run(), (err: CairnError) => {
      assert.equal(err.name, c.error, c.name)
      assert.equal(codeOf(err), c.code, c.name)
      return true
    })
  }
  // An exact repeat is idempotent, and the log continues after it.
  assert.ok((await appendAll(uid, 1, [[rec(2), rec(3), rec(4)]])) >= 4)
  assertSame(await client.read(uid, 1, 0), [...stored, rec(4)])
})

test('drop removes the journal, is idempotent, and a dropped journal cannot be reopened', async () => {
  const uid = 'vol-drop'
  await client.open(uid, 1)
  await appendAll(uid, 1, [[rec(1)]])
  await client.drop(uid, 1)
  await client.drop(uid, 1)
  await client.drop('vol-never-existed', 0)
  await assert.rejects(client.open(uid, 5), (err: CairnError) => err.name === 'JournalDroppedError' && codeOf(err) === Status.NOT_FOUND)
  assert.deepEqual((await readdir(join(dir, 'journal', uid))).filter((n) => n.endsWith('.log')), [])
})

/** Sets the modification time of a journal directory and everything in it to `atMs`. */
async function ageJournal(uid: string, atMs: number): Promise<void> {
  const path = join(dir, 'journal', uid)
  const when = new Date(atMs)
  for (const name of await readdir(path)) await utimes(join(path, name), when, when)
  await utimes(path, when, when)
}

const exists = (uid: string): Promise<boolean> => hasJournal(dir, uid)

test('collect deletes the journals of volumes not listed and unchanged since the cutoff; listed, young and busy ones stay', async () => {
  const hourAgo = Date.now() - 3_600_000
  for (const uid of ['gc-gone', 'gc-live']) {
    await client.open(uid, 1)
    await appendAll(uid, 1, [[rec(1), rec(2)]])
  }
  // A tombstone left by Drop goes the same way.
  await client.open('gc-tombstone', 1)
  await client.drop('gc-tombstone', 1)
  // In use: an Append stream stays open on it.
  await client.open('gc-busy', 1)
  let firstAck!: { resolve: () => void; reject: (err: Error) => void }
  const acked = new Promise<void>((resolve, reject) => (firstAck = { resolve, reject }))
  const busy = client.openAppendStream('gc-busy', 1, { onAck: () => firstAck.resolve(), onError: (err) => firstAck.reject(err) })
  busy.send([rec(1)])
  try {
    await acked
    for (const uid of ['gc-gone', 'gc-live', 'gc-tombstone', 'gc-busy']) await ageJournal(uid, hourAgo)
    // Not listed, but written after the cutoff (a volume created after the caller listed the live ones).
    await client.open('gc-young', 1)
    await appendAll('gc-young', 1, [[rec(1)]])
    const cutoff = Date.now() - 60_000
    const request = { liveVolumeUids: ['gc-live'], olderThanUnixMs: cutoff }

    const dry = await client.collect({ ...request, dryRun: true })
    assert.equal(dry.collectedJournals, 2)
    assert.ok(dry.freedBytes > 2000, `a dry run counts the bytes it would free (${dry.freedBytes})`)
    assert.ok(await exists('gc-gone'), 'a dry run deletes nothing')

    const done = await client.collect({ ...request, dryRun: false })
    assert.equal(done.collectedJournals, 2)
    assert.equal(done.freedBytes, dry.freedBytes)
    assert.equal(done.busyJournals, 1)
    assert.ok(done.youngJournals >= 1, 'gc-young (and the other tests\' journals) are younger than the cutoff')
    assert.ok(done.scannedJournals >= 5)
    assert.deepEqual(await Promise.all(['gc-gone', 'gc-tombstone', 'gc-live', 'gc-busy', 'gc-young'].map(exists)), [false, false, true, true, true])
    assertSame(await client.read('gc-live', 1, 0), [rec(1), rec(2)])
    // A collected uid is a journal never opened again: its volume no longer exists, so nothing fences there.
    assert.equal((await client.open('gc-gone', 1)).lastSeq, 0)
    assert.equal((await client.collect({ ...request, dryRun: false })).collectedJournals, 0, 'nothing left to collect: the reopened one is young')
  } finally {
    busy.cancel()
  }

  const bad: Array<{ name: string; run: () => Promise<unknown>; code: Status; error: string }> = [
    { name: 'cutoff in the future', run: () => client.collect({ liveVolumeUids: [], olderThanUnixMs: Date.now() + 3_600_000, dryRun: false }), code: Status.FAILED_PRECONDITION, error: 'JournalCutoffError' },
    { name: 'cutoff 0', run: () => client.collect({ liveVolumeUids: [], olderThanUnixMs: 0, dryRun: false }), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
    { name: 'live uid with a path', run: () => client.collect({ liveVolumeUids: ['../x'], olderThanUnixMs: 1, dryRun: false }), code: Status.INVALID_ARGUMENT, error: 'JournalRequestError' },
  ]
  for (const c of bad) {
    await assert.rejects(c.run(), (err: CairnError) => {
      assert.equal(err.name, c.error, c.name)
      assert.equal(codeOf(err), c.code, c.name)
      return true
    })
  }
  assert.ok(await exists('gc-live'), 'refused requests delete nothing')
})

test('a torn or corrupt last record is cut at restart; earlier records stay and the log continues', async () => {
  const uid = 'vol-torn'
  await client.open(uid, 1)
  const records = Array.from({ length: 20 }, (_, i) => rec(i + 1, 1, 500))
  await appendAll(uid, 1, [records])
  client.close()
  await node.stop()

  const volDir = join(dir, 'journal', uid)
  const last = (await readdir(volDir)).filter((n) => n.endsWith('.log')).sort().at(-1)!
  const path = join(volDir, last)
  await truncate(path, (await stat(path)).size - 7)
  node = await startInProcessNode(dir)
  client = new JournalClient({ address: node.grpcAddress() })
  let opened = await client.open(uid, 1)
  assertSame(opened.records, records.slice(0, 19))

  await appendAll(uid, 1, [[records[19]!, rec(21, 1, 500)]])
  client.close()
  await node.stop()
  // Flip a payload byte of the last record: its CRC fails.
  const size = (await stat(path)).size
  const fh = await open(path, 'r+')
  await fh.write(Buffer.from([0xff ^ (await fh.read(Buffer.alloc(1), 0, 1, size - 10)).buffer[0]!]), 0, 1, size - 10)
  await fh.close()
  node = await startInProcessNode(dir)
  client = new JournalClient({ address: node.grpcAddress() })
  opened = await client.open(uid, 1)
  assertSame(opened.records, records)
  assert.equal(opened.lastSeq, 20)
})
