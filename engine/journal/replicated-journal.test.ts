import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { JournalOp } from '../contracts.js'
import type { StorageNode } from '../../storage-node/daemon.js'
import { JournalClient } from '../../storage-node/journal/journal-client.js'
import { seededBytes, startInProcessNode } from '../../storage-node/journal/testing.js'
import { ReplicatedJournal, type JournalMember, type ReplicatedJournalInit } from './replicated-journal.js'
import { decodeOp, encodeOp } from './op-codec.js'

let root: string
const nodes: StorageNode[] = []
let members: JournalMember[] = []

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'cairn-rjournal-'))
  for (let i = 0; i < 3; i++) nodes.push(await startInProcessNode(join(root, `n${i}`)))
  members = nodes.map((n, i) => ({ id: `n${i}`, address: n.grpcAddress() }))
})

after(async () => {
  for (const n of nodes) await n.stop()
  await rm(root, { recursive: true, force: true })
})

function journal(uid: string, epoch: number, extra: Partial<ReplicatedJournalInit> = {}): ReplicatedJournal {
  return new ReplicatedJournal(
    { volumeUid: uid, epoch, replicas: members, replaceTimeoutMs: 5000, ...extra },
    { pickReplacement: () => undefined, onReplicasChanged: () => undefined },
  )
}

/** A seeded mix of every op kind. */
function ops(count: number, seed: number): JournalOp[] {
  return Array.from({ length: count }, (_, i): JournalOp => {
    const n = seed + i
    switch (n % 4) {
      case 0:
        return { kind: 'write', offsetBytes: n * 4096, data: seededBytes(1 + (n % 7) * 700, n) }
      case 1:
        return { kind: 'trim', offsetBytes: n * 512, lengthBytes: 4096 }
      case 2:
        return { kind: 'zero', offsetBytes: n * 1024, lengthBytes: 8192 }
      default:
        return { kind: 'resize', sizeBytes: n * 1 << 20 }
    }
  })
}

function normalise(op: JournalOp): unknown {
  return op.kind === 'write' ? { ...op, data: Buffer.from(op.data).toString('hex') } : op
}

test('op codec round-trips every op kind', () => {
  for (const op of ops(8, 3)) {
    const { op: code, payload } = encodeOp(op)
    assert.deepEqual(normalise(decodeOp(code, payload)), normalise(op))
  }
  assert.throws(() => decodeOp(2, new Uint8Array(3)), { name: 'JournalOpFormatError' })
  assert.throws(() => encodeOp({ kind: 'trim', offsetBytes: -1, lengthBytes: 1 }), { name: 'InvalidArgumentError' })
})

test('append, sync, checkpoint; recovery at the next epoch returns exactly the records after the checkpoint, in order', async () => {
  const seed = 101
  const uid = 'vol-rt'
  const j1 = journal(uid, 1)
  assert.deepEqual(await j1.open(), { checkpoint: null, records: [] })
  const all = ops(120, seed)
  const appended = []
  for (const op of all) appended.push(await j1.append(op))
  assert.deepEqual(appended.map((a) => a.seq), all.map((_, i) => i + 1), `seed ${seed}`)
  await j1.sync()
  await Promise.all(appended.map((a) => a.durable))
  const cp = { rootCid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', sizeBytes: 1 << 30, seq: 70 }
  await j1.checkpoint(cp)
  const more = ops(10, seed + 1000)
  for (const op of more) await j1.append(op)
  await j1.sync()
  await j1.close()

  const j2 = journal(uid, 2)
  const recovered = await j2.open()
  assert.deepEqual(recovered.checkpoint, cp)
  assert.deepEqual(recovered.records.map((r) => r.seq), Array.from({ length: 60 }, (_, i) => 71 + i))
  assert.deepEqual(recovered.records.map((r) => normalise(r.op)), [...all.slice(70), ...more].map(normalise), `seed ${seed}`)
  // The next epoch continues the sequence.
  assert.equal((await j2.append({ kind: 'resize', sizeBytes: 1 })).seq, 131)
  await j2.sync()
  await j2.close()
})

test('a second engine at a higher epoch fences the first: its append, sync and checkpoint fail and nothing it sends is stored', async () => {
  const uid = 'vol-fenced'
  const j1 = journal(uid, 1)
  await j1.open()
  for (const op of ops(5, 7)) await j1.append(op)
  await j1.sync()

  const j2 = journal(uid, 2)
  const recovered = await j2.open()
  assert.equal(recovered.records.length, 5)

  const late = await j1.append({ kind: 'write', offsetBytes: 0, data: seededBytes(100, 1) })
  await assert.rejects(late.durable, { name: 'EpochFencedError' })
  await assert.rejects(j1.append({ kind: 'resize', sizeBytes: 1 }), { name: 'EpochFencedError' })
  await assert.rejects(j1.sync(), { name: 'EpochFencedError' })
  await assert.rejects(j1.checkpoint({ rootCid: null, sizeBytes: 0, seq: 5 }), { name: 'EpochFencedError' })
  await j1.close()

  for (const m of members) {
    const client = new JournalClient({ address: m.address })
    const stored = await client.read(uid, 2, 0)
    client.close()
    assert.deepEqual(stored.map((r) => [r.seq, r.epoch]), [1, 2, 3, 4, 5].map((s) => [s, 1]), `replica ${m.id} holds only the records before the fence`)
  }
  await j2.close()
})

test('append waits while the retained budget is full and goes on after the next checkpoint', async () => {
  const j = journal('vol-budget', 1, { retainedBytesMax: 20_000 })
  await j.open()
  const data = seededBytes(6000, 5)
  const first = []
  for (let i = 0; i < 3; i++) first.push(await j.append({ kind: 'write', offsetBytes: i * 8192, data }))
  let admitted = false
  const fourth = j.append({ kind: 'write', offsetBytes: 3 * 8192, data }).then((r) => {
    admitted = true
    return r
  })
  await Promise.all(first.map((a) => a.durable))
  assert.equal(admitted, false, 'the fourth record waits for a checkpoint while 18 KB are retained')
  await j.checkpoint({ rootCid: null, sizeBytes: 0, seq: 3 })
  const r = await fourth
  assert.equal(r.seq, 4)
  await r.durable
  await j.close()
})

test('records admitted when an ack frees the window are sent even if a later one must still wait (no stall)', async () => {
  // Five appends in one turn against a window of two records: 1-2 go at once, 3-5 wait.
  // The acks of 1-2 admit 3 and 4 while 5 still does not fit. Before the fix admission
  // stopped at 5 without sending 3 and 4, and with nothing in flight to trigger a send,
  // their durability (and every sync) waited for ever.
  const j = journal('vol-admit-stall', 1, { windowBytes: 13_000 })
  await j.open()
  const data = seededBytes(6000, 9)
  const appends = [0, 1, 2, 3, 4].map((i) => j.append({ kind: 'write', offsetBytes: i * 8192, data }))
  let timer: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('admitted records never became durable')), 20_000)
  })
  try {
    const records = await Promise.race([Promise.all(appends), stalled])
    assert.deepEqual(records.map((r) => r.seq), [1, 2, 3, 4, 5])
    await Promise.race([Promise.all([...records.map((r) => r.durable), j.sync()]), stalled])
  } finally {
    clearTimeout(timer)
  }
  await j.close()
})

test('open with no reachable replica fails with JournalUnavailableError', async () => {
  const dead = [{ id: 'x', address: '127.0.0.1:1' }]
  const j = new ReplicatedJournal({ volumeUid: 'vol-none', epoch: 1, replicas: dead }, { pickReplacement: () => undefined, onReplicasChanged: () => undefined })
  await assert.rejects(j.open(), { name: 'JournalUnavailableError' })
  await assert.rejects(j.append({ kind: 'resize', sizeBytes: 1 }), { name: 'JournalUnavailableError' })
})

/** A connect() whose Append streams count messages and can hold acknowledgements back. */
function gatedConnect(): { connect: (m: JournalMember) => JournalClient; sent: Map<string, number[]>; hold: boolean; release(): void } {
  const sent = new Map<string, number[]>()
  const held: Array<() => void> = []
  const gate = {
    sent,
    hold: false,
    release(): void {
      gate.hold = false
      for (const deliver of held.splice(0)) deliver()
    },
    connect: (m: JournalMember): JournalClient => {
      const client = new JournalClient({ address: m.address })
      const open = client.openAppendStream.bind(client)
      client.openAppendStream = (uid, epoch, handlers) => {
        const stream = open(uid, epoch, {
          onAck: (seq) => (gate.hold ? held.push(() => handlers.onAck(seq)) : handlers.onAck(seq)),
          onError: handlers.onError,
        })
        const send = stream.send.bind(stream)
        stream.send = (records) => {
          sent.set(m.id, [...(sent.get(m.id) ?? []), records.length])
          send(records)
        }
        return stream
      }
      return client
    },
  }
  return gate
}

test('records appended while a message is unacknowledged leave together in the next message, and all become durable', async () => {
  const gate = gatedConnect()
  const j = new ReplicatedJournal(
    { volumeUid: 'vol-coalesce', epoch: 1, replicas: members, replaceTimeoutMs: 5000 },
    { pickReplacement: () => undefined, onReplicasChanged: () => undefined, connect: gate.connect },
  )
  await j.open()
  gate.hold = true
  const first = await j.append({ kind: 'write', offsetBytes: 0, data: seededBytes(4096, 1) })
  const later = []
  // One record per turn of the event loop, as NBD requests arrive.
  for (let i = 1; i <= 50; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    later.push(await j.append({ kind: 'write', offsetBytes: i * 4096, data: seededBytes(4096, i + 1) }))
  }
  for (const m of members) assert.deepEqual(gate.sent.get(m.id), [1], `replica ${m.id}: only the first message is out while it is unacknowledged`)
  gate.release()
  await j.sync()
  await Promise.all([first, ...later].map((a) => a.durable))
  for (const m of members) assert.deepEqual(gate.sent.get(m.id), [1, 50], `replica ${m.id}: the 50 waiting records went as one message`)
  await j.close()
  const recovered = await journal('vol-coalesce', 2).open()
  assert.deepEqual(recovered.records.map((r) => r.seq), Array.from({ length: 51 }, (_, i) => i + 1))
})
