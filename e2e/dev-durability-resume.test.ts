/**
 * Kill the repairing node mid-repair: a real `cairn dev` (2+1 on 4 storage nodes)
 * loses a member for good, the others rebuild its shards at a slow, capped pace, and
 * one of them is SIGKILLed while its pass is under way. After its restart the pass
 * continues from the cursor saved on disk (it examines fewer chunks than the whole
 * pass), and the rebuild still ends with every chunk at k+m healthy shards and the
 * volume reading back identical.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { runOk } from '../engine/nbd/testing.js'
import { Dev, nbdshEnv, waitUntil } from './harness.js'
import { chunksOf, checkRegion, counts, fault, healthyShards, K, M, serving, waitFlushed, waitPlaced, writeRegion } from './dev-durability-support.js'

const MIB_WRITTEN = 8
const CHUNKS_WRITTEN = (MIB_WRITTEN * 1024 * 1024) / 65536

/** The part of storage-node/repair's `repair-state.json` this test reads. */
interface SavedRepairState {
  cursor: { cidHex: string } | null
  pass: { chunksExamined: number }
}

async function savedState(nodeDir: string): Promise<SavedRepairState | undefined> {
  const text = await readFile(join(nodeDir, 'repair', 'repair-state.json'), 'utf8').catch(() => undefined)
  return text === undefined ? undefined : (JSON.parse(text) as SavedRepairState)
}

interface PassLog {
  member: string
  resumed: boolean
  completed: boolean
  chunksExamined: number
  chunksExaminedThisRun: number
}

describe('cairn dev durability: a repairing node killed mid-pass resumes from its cursor', () => {
  let dev: Dev

  before(async () => {
    dev = await Dev.start({
      size: '64MiB',
      dataShards: K,
      parityShards: M,
      // A slow cap (about 128 KiB/s per node) so that each pass spans many checkpoints; a long down timeout so the kill below is a restart, not a loss.
      extraArgs: ['--storage-nodes', '4', '--member-down-timeout', '10m', '--repair-interval', '1s', '--repair-bandwidth-bytes-per-second', String(384 * 1024)],
    })
  })
  after(async () => {
    await dev?.destroy()
  })

  test('SIGKILL of a node during its repair pass: after the restart it continues from the saved cursor, and the rebuild completes', async () => {
    await runOk('nbdsh', ['-u', dev.uri, '-c', writeRegion(11, 0, MIB_WRITTEN)], 120_000, nbdshEnv)
    await waitFlushed(dev, CHUNKS_WRITTEN)
    const state = await dev.state()
    const chunks = chunksOf(await healthyShards(serving(state, [])))
    // Lose node-3 for good, then take it out of the map: every other node has shards to rebuild and move.
    await fault(dev, 'node-3', 'kill')
    await rm((state.nodes.find((n) => n.id === 'node-3') as { dataDir: string }).dataDir, { recursive: true, force: true })
    const removed = await dev.cli(['node', 'remove', 'node-3'])
    assert.equal(removed.code, 0, removed.stderr)
    const survivors = state.nodes.filter((n) => n.id !== 'node-3')
    // A node seen mid-pass may finish the pass before the kill lands (the status server's
    // round trip on a loaded machine): then it left no cursor, so it is restarted and
    // another pass in progress is looked for.
    const deadline = Date.now() + 240_000
    let victim: (typeof survivors)[number] | undefined
    let saved: SavedRepairState | undefined
    for (let attempt = 1; victim === undefined; attempt++) {
      const candidate = await waitUntil(
        async () => {
          for (const n of survivors) {
            const s = await savedState(n.dataDir)
            if (s?.cursor != null && s.pass.chunksExamined > 0) return n
          }
          return undefined
        },
        Math.max(1000, deadline - Date.now()),
        'a node to checkpoint a repair pass in progress',
        100,
      )
      await fault(dev, candidate.id, 'kill')
      const left = await savedState(candidate.dataDir)
      if (left?.cursor != null) {
        victim = candidate
        saved = left
        break
      }
      assert.ok(attempt < 5 && Date.now() < deadline, `${attempt} nodes finished their pass between being seen mid-pass and killed; none left a cursor on disk`)
      await fault(dev, candidate.id, 'start')
    }
    assert.ok(saved?.cursor != null, 'the killed node left a cursor on disk')
    const linesBefore = dev.lines.length
    await fault(dev, victim.id, 'start')
    const pass = await waitUntil(
      () => {
        for (const line of dev.lines.slice(linesBefore)) {
          if (!line.includes('"repair pass completed"') || !line.includes(`"member":"${victim.id}"`)) continue
          return JSON.parse(line) as PassLog
        }
        return undefined
      },
      240_000,
      `${victim.id} to finish its resumed pass`,
      200,
    )
    assert.equal(pass.resumed, true, 'the pass after the restart continued the saved one')
    assert.ok(pass.chunksExamined >= saved.pass.chunksExamined, 'the pass keeps the counters saved before the kill')
    assert.ok(pass.chunksExaminedThisRun < pass.chunksExamined, `resumed, not from zero: ${pass.chunksExaminedThisRun} of ${pass.chunksExamined} chunks examined after the restart`)
    await waitPlaced(dev, chunks, serving(await dev.state(), []))
    assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(11, 0, MIB_WRITTEN)], 120_000, nbdshEnv)), { ok: MIB_WRITTEN, err: 0, bad: 0 })
  })
})
