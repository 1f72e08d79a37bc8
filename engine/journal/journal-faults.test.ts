/**
 * Real faults against real daemons: `cairn storage-node` child processes killed
 * with SIGKILL while a ReplicatedJournal appends and syncs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import type { JournalOp } from '../contracts.js'
import { JournalClient } from '../../storage-node/journal/journal-client.js'
import { seededBytes, spawnDaemon, withTempDir, type DaemonProcess } from '../../storage-node/journal/testing.js'
import { ReplicatedJournal, type JournalMember } from './replicated-journal.js'

function writeOp(seq: number, seed: number): JournalOp {
  return { kind: 'write', offsetBytes: seq * 4096, data: seededBytes(2000 + (seq % 5) * 1000, seed + seq) }
}

function hex(op: JournalOp): string {
  return op.kind === 'write' ? Buffer.from(op.data).toString('hex') : JSON.stringify(op)
}

async function killAll(daemons: readonly DaemonProcess[]): Promise<void> {
  for (const d of daemons) {
    d.child.kill('SIGKILL')
    await d.exited
  }
}

test('SIGKILL of a replica while appending: every durable record survives its restart, the journal replaces it and goes on', async () => {
  const seed = 4242
  await withTempDir('cairn-jfault-', async (root) => {
    const daemons = await Promise.all([0, 1, 2, 3].map((i) => spawnDaemon(join(root, `n${i}`))))
    const all: JournalMember[] = daemons.map((d, i) => ({ id: `n${i}`, address: d.grpcAddress }))
    const changes: string[][] = []
    const journal = new ReplicatedJournal(
      { volumeUid: 'vol-kill', epoch: 1, replicas: all.slice(0, 3), replaceTimeoutMs: 10_000, ackTimeoutMs: 5000 },
      {
        pickReplacement: (excluded) => all.find((m) => !excluded.includes(m.id)),
        onReplicasChanged: (ids) => void changes.push([...ids]),
      },
    )
    const restarted: DaemonProcess[] = []
    try {
      await journal.open()
      const ops = new Map<number, JournalOp>()
      let durableBeforeKill = 0
      let lastDurable = 0
      for (let round = 0; round < 40; round++) {
        // A few appends, then a sync (NBD writes then a FLUSH); the kill lands while a round is in flight.
        for (let i = 0; i < 8; i++) {
          const op = writeOp(round * 8 + i + 1, seed)
          const { seq, durable } = await journal.append(op)
          ops.set(seq, op)
          void durable.then(() => void (lastDurable = Math.max(lastDurable, seq)), () => undefined)
        }
        if (round === 15) {
          durableBeforeKill = lastDurable
          daemons[1]!.child.kill('SIGKILL')
        }
        await journal.sync()
        lastDurable = Math.max(lastDurable, round * 8 + 8)
      }
      assert.equal((await daemons[1]!.exited).signal, 'SIGKILL')
      assert.deepEqual(changes, [['n0', 'n3', 'n2']], 'the dead replica was replaced by the spare and reported')
      assert.deepEqual(journal.replicas(), ['n0', 'n3', 'n2'])
      assert.ok(durableBeforeKill >= 15 * 8, `seed ${seed}: records were durable before the kill (${durableBeforeKill})`)
      await journal.close()

      // The killed daemon, restarted on its data dir, still holds every record that was durable while it was a replica.
      restarted.push(await spawnDaemon(join(root, 'n1')))
      const client = new JournalClient({ address: restarted[0]!.grpcAddress })
      const onKilled = (await client.open('vol-kill', 1)).records
      client.close()
      assert.ok(onKilled.length >= durableBeforeKill, `seed ${seed}: ${onKilled.length} records on the restarted replica, ${durableBeforeKill} were durable`)
      onKilled.forEach((r, i) => assert.equal(r.seq, i + 1))

      // The new set recovers every durable record, in order, byte for byte.
      const next = new ReplicatedJournal(
        { volumeUid: 'vol-kill', epoch: 2, replicas: [all[0]!, all[3]!, all[2]!] },
        { pickReplacement: () => undefined, onReplicasChanged: () => undefined },
      )
      const recovered = await next.open()
      assert.equal(recovered.records.length, 320, `seed ${seed}`)
      recovered.records.forEach((r, i) => {
        assert.equal(r.seq, i + 1)
        assert.equal(hex(r.op), hex(ops.get(r.seq)!), `seed ${seed}: record ${r.seq}`)
      })
      await next.close()
    } finally {
      await killAll([...daemons.filter((d, i) => i !== 1), ...restarted])
    }
  })
})

test('SIGKILL of every replica: durability fails with JournalUnavailableError and nothing is acknowledged falsely', async () => {
  await withTempDir('cairn-jfault-all-', async (root) => {
    const daemons = await Promise.all([0, 1, 2].map((i) => spawnDaemon(join(root, `n${i}`))))
    const members: JournalMember[] = daemons.map((d, i) => ({ id: `n${i}`, address: d.grpcAddress }))
    const spare = { id: 'spare', address: '127.0.0.1:1' }
    const journal = new ReplicatedJournal(
      { volumeUid: 'vol-all', epoch: 1, replicas: members, replaceTimeoutMs: 5000 },
      { pickReplacement: (excluded) => (excluded.includes(spare.id) ? undefined : spare), onReplicasChanged: () => undefined },
    )
    try {
      await journal.open()
      for (let i = 1; i <= 10; i++) await journal.append(writeOp(i, 1))
      await journal.sync()
      await killAll(daemons)
      const after = await journal.append(writeOp(11, 1)).catch((err: Error) => err)
      const outcome = after instanceof Error ? after : await after.durable.then(() => 'durable', (err: Error) => err)
      assert.equal((outcome as Error).name, 'JournalUnavailableError')
      await assert.rejects(journal.sync(), { name: 'JournalUnavailableError' })
      await assert.rejects(journal.checkpoint({ rootCid: null, sizeBytes: 0, seq: 10 }), { name: 'JournalUnavailableError' })
    } finally {
      await journal.close()
    }
  })
})
