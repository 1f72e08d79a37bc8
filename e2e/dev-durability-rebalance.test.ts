/**
 * Adding a member to a running `cairn dev` (2+1 on 3 storage nodes, a fourth added
 * with `cairn node add`) while an NBD client keeps reading (and, from the moment the
 * add returns, writing), checking every read: the other nodes move the shards whose placement now names the new member,
 * and delete their old copies only after the move. The census then finds every chunk
 * with k+m healthy shards on its current placement and no old copy anywhere; with a
 * cold engine cache the volume reads back exactly.
 *
 * Pace: `--repair-bandwidth-bytes-per-second` is one cap for the whole cluster; each
 * node's token bucket runs at cap / active members (ADR 0020). The test samples every
 * node's transfer counters (`cairn_repair_bytes_total` moved + fetched, the bytes that
 * go through the bucket) and checks the token-bucket bound from the moment the map
 * changed: bytes ≤ cap × elapsed + burst. That is a rate bound (it holds however slow
 * the machine is), not a timing assertion. A short settle time (`--repair-settle 2s`)
 * lets data written seconds before the add move at once, so the window is mostly
 * transfer time and the bound has teeth.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { runOk } from '../engine/nbd/testing.js'
import { Dev, fetchText, nbdshEnv, waitUntil } from './harness.js'
import { chunksOf, checkRegion, clusterMap, counts, healthyShards, K, M, misplaced, nodeStats, serving, strays, waitFlushed, writeRegion } from './dev-durability-support.js'

const SEED = 0x0ba1_a9ce
const MIB_SEEDED = 1
const CHUNKS_SEEDED = (MIB_SEEDED * 1024 * 1024) / 65536
/** The live client rewrites these slots (one chunk each, so few are written under the old map), after the seeded region. */
const LIVE_BASE_MIB = 16
const LIVE_SLOTS = 8
const LIVE_SLOT_BYTES = 64 * 1024
/** Low, so that the move of the seeded MiB spans seconds and the bound has teeth where the repairers are faster than it. */
const CAP_BYTES_PER_SECOND = 16 * 1024
/** Token-bucket burst per node is a tenth of a second at its rate: a tenth of a second of the cap in all. */
const BURST_BYTES = CAP_BYTES_PER_SECOND / 10

/**
 * nbdsh code for the live client: until `stop` exists it reads a seeded MiB and, once
 * `go` exists, also writes fresh random bytes to a slot at most 4 times a second (an
 * unthrottled writer fills the store with garbage versions that every repair pass then
 * has to list) and reads back one live slot,
 * comparing each with what it wrote. It prints `op N` after each op and at the end
 * `ok N err N bad N`, and dumps the live slots' final contents to `expected`.
 */
function liveClient(go: string, stop: string, expected: string): string {
  return [
    'import os, random, time',
    'MiB = 1048576',
    `SLOT = ${LIVE_SLOT_BYTES}`,
    `seeded_rng = random.Random(${SEED})`,
    `seeded = [seeded_rng.randbytes(MiB) for _ in range(${MIB_SEEDED})]`,
    `rng = random.Random(${SEED + 1})`,
    'live = {}',
    'ops = err = bad = 0',
    'j = 0',
    'next_write = 0.0',
    `while not os.path.exists(${JSON.stringify(stop)}):`,
    `    slot = j % ${LIVE_SLOTS}`,
    '    try:',
    `        if os.path.exists(${JSON.stringify(go)}) and time.monotonic() >= next_write:`,
    '            next_write = time.monotonic() + 0.25',
    '            data = rng.randbytes(SLOT)',
    `            h.pwrite(data, ${LIVE_BASE_MIB} * MiB + slot * SLOT)`,
    '            live[slot] = data',
    '            if j % 2 == 1:',
    '                h.flush()',
    '            k = rng.choice(sorted(live))',
    `            if h.pread(SLOT, ${LIVE_BASE_MIB} * MiB + k * SLOT) != live[k]:`,
    '                bad += 1',
    `        a = j % ${MIB_SEEDED}`,
    '        if h.pread(MiB, a * MiB) != seeded[a]:',
    '            bad += 1',
    '        ops += 1',
    '    except nbd.Error:',
    '        err += 1',
    '    print("op", ops, flush=True)',
    '    j += 1',
    'h.flush()',
    `with open(${JSON.stringify(expected)}, "wb") as f:`,
    `    for slot in range(${LIVE_SLOTS}):`,
    '        f.write(live.get(slot, bytes(SLOT)))',
    'print("ok", ops, "err", err, "bad", bad, flush=True)',
  ].join('\n')
}

/** nbdsh code comparing the live slots with the dump the live client left. */
function checkLive(expected: string): string {
  return [
    'MiB = 1048576',
    `SLOT = ${LIVE_SLOT_BYTES}`,
    `want = open(${JSON.stringify(expected)}, "rb").read()`,
    'ok = err = bad = 0',
    `for slot in range(${LIVE_SLOTS}):`,
    '    try:',
    `        got = h.pread(SLOT, ${LIVE_BASE_MIB} * MiB + slot * SLOT)`,
    '        ok, bad = (ok + 1, bad) if got == want[slot * SLOT:(slot + 1) * SLOT] else (ok, bad + 1)',
    '    except nbd.Error:',
    '        err += 1',
    'print("ok", ok, "err", err, "bad", bad)',
  ].join('\n')
}

/** The repair bytes that went through each node's token bucket (moves and rebuild fetches), summed over `nodes`. */
async function pacedBytes(nodes: ReadonlyArray<{ metricsAddress: string }>): Promise<number> {
  let sum = 0
  for (const node of nodes) {
    for (const line of (await fetchText(`http://${node.metricsAddress}/metrics`)).split('\n')) {
      if (line.startsWith('cairn_repair_bytes_total{') && /action="(moved|fetched)"/.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
  }
  return sum
}

describe('cairn dev durability: a member added under live I/O gets its shards, paced', () => {
  let dev: Dev
  let work: string

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-e2e-rebalance-'))
    dev = await Dev.start({
      size: '64MiB',
      dataShards: K,
      parityShards: M,
      extraArgs: [
        '--storage-nodes', '3', '--member-down-timeout', '10m', '--repair-interval', '1s', '--repair-settle', '2s', '--scrub-interval', '1h',
        '--repair-bandwidth-bytes-per-second', String(CAP_BYTES_PER_SECOND),
      ],
    })
  })
  after(async () => {
    await dev?.destroy()
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  test('cairn node add refuses bad input with typed errors and changes nothing', async () => {
    const epoch = (await clusterMap(dev)).epoch
    const badDomain = await dev.cli(['node', 'add', '--failure-domain', 'Not A Label', '--output', 'json'])
    assert.equal(badDomain.code, 2)
    assert.equal((JSON.parse(badDomain.stdout) as { error: { name: string } }).error.name, 'InvalidArgumentError')
    const badWeight = await dev.cli(['node', 'add', '--weight=-3', '--output', 'json'])
    assert.equal((JSON.parse(badWeight.stdout) as { error: { name: string } }).error.name, 'InvalidArgumentError')
    const notNumber = await dev.cli(['node', 'add', '--weight', 'heavy', '--output', 'json'])
    assert.equal((JSON.parse(notNumber.stdout) as { error: { name: string } }).error.name, 'CliUsageError')
    const map = await clusterMap(dev)
    assert.equal(map.epoch, epoch, 'no new map epoch')
    assert.equal(map.members.length, 3)
    assert.equal((await dev.state()).nodes.length, 3, 'no process started')
  })

  test('node add with reads and writes running: shards move to the new placement, old copies go, nothing is lost, the pace stays within the cap', async (t) => {
    await runOk('nbdsh', ['-u', dev.uri, '-c', writeRegion(SEED, 0, MIB_SEEDED)], 120_000, nbdshEnv)
    await waitFlushed(dev, CHUNKS_SEEDED)

    // The live client, with its progress followed line by line.
    const go = join(work, 'go')
    const stop = join(work, 'stop')
    const expected = join(work, 'expected.bin')
    const client = spawn('nbdsh', ['-u', dev.uri, '-c', liveClient(go, stop, expected)], { env: nbdshEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    let ops = 0
    let summary = ''
    let stderr = ''
    createInterface({ input: client.stdout }).on('line', (line) => {
      if (line.startsWith('op ')) ops = Number(line.slice(3))
      else summary = line
    })
    client.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => client.once('exit', (code) => resolve(code)))
    try {
      await waitUntil(() => ops >= 2 || client.exitCode !== null, 60_000, 'the live client to run')

      // Add the member; the map changes inside this call, so every paced byte after it is counted from here.
      const startedMs = Date.now()
      const baseBytes = await pacedBytes((await dev.state()).nodes)
      const added = await dev.cli(['node', 'add', '--failure-domain', 'rack-new', '--weight', '1', '--output', 'json'])
      assert.equal(added.code, 0, added.stderr + added.stdout)
      const member = JSON.parse(added.stdout) as { id: string; failureDomain: string; weight: number; epoch: number }
      assert.equal(member.id, 'node-3')
      assert.equal(member.failureDomain, 'rack-new')
      const map = await clusterMap(dev)
      assert.equal(map.members.find((m) => m.id === 'node-3')?.state, 'active')
      const opsAtAdd = ops
      // Writes start now: the seeded data is all that sits on the old placement, plus what the engine writes before its map refresh.
      await writeFile(go, '')

      // Sample the paced bytes until the census is clean; each sample is (time read, bytes).
      const samples: Array<{ ms: number; bytes: number; ops: number }> = []
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          const bytes = (await pacedBytes((await dev.state()).nodes)) - baseBytes
          samples.push({ ms: Date.now(), bytes, ops })
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
      })()
      let opsWhenMoving = -1
      let lastProblems: string[] = []
      try {
        await waitUntil(
          async () => {
            if (opsWhenMoving < 0 && (samples.at(-1)?.bytes ?? 0) > 0) opsWhenMoving = ops
            // The live client stops once data has moved and it kept going meanwhile; its last chunks must settle and move too.
            if (opsWhenMoving >= 0 && ops > opsWhenMoving + 2) await writeFile(stop, '')
            if (summary === '') return false
            const nodes = serving(await dev.state(), [])
            const held = await healthyShards(nodes)
            const chunks = chunksOf(held)
            const current = await clusterMap(dev)
            lastProblems = [...misplaced(chunks, current, held).map((s) => `missing ${s}`), ...strays(chunks, current, held).map((s) => `stray ${s}`)]
            return lastProblems.length === 0
          },
          240_000,
          'every shard on its current placement and no old copy left',
          1000,
        )
      } catch (err) {
        throw new Error(`${lastProblems.length} problems, e.g. ${lastProblems.slice(0, 6).join(', ')} (live client ops ${ops}, ${summary})`, { cause: err })
      } finally {
        sampling = false
        await sampler
      }
      const code = await Promise.race([exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the live client did not exit')), 60_000).unref())])
      assert.equal(code, 0, stderr)
      const live = counts(summary)
      assert.deepEqual({ err: live.err, bad: live.bad }, { err: 0, bad: 0 }, `every live read was exact (${live.ok} ops)`)

      // The pace: every paced byte seen by a sample was taken from a bucket after the map changed.
      const movedBytes = (samples.at(-1) as { bytes: number }).bytes
      assert.ok(movedBytes > 0, 'the rebalance moved data')
      const done = samples.find((s) => s.bytes === movedBytes) as { ms: number; bytes: number; ops: number }
      const beforeMoves = samples.filter((s) => s.bytes === 0).at(-1) ?? { ms: startedMs, bytes: 0, ops: opsAtAdd }
      assert.ok(done.ops > beforeMoves.ops, `the client kept reading and writing while shards moved (${beforeMoves.ops} ops before the first move, ${done.ops} when the last landed)`)
      for (const s of samples) {
        const boundBytes = CAP_BYTES_PER_SECOND * ((s.ms - startedMs) / 1000) * 1.05 + BURST_BYTES
        assert.ok(s.bytes <= boundBytes, `${s.bytes} paced bytes ${s.ms - startedMs} ms after the add exceed the cap's ${Math.round(boundBytes)}`)
      }
      const elapsedS = (done.ms - startedMs) / 1000
      // How close the busiest moment came to the bound: bytes by a sample over what the cap allowed by then.
      const peak = Math.max(...samples.map((s) => s.bytes / (CAP_BYTES_PER_SECOND * ((s.ms - startedMs) / 1000) + BURST_BYTES)))
      const stats = await nodeStats(serving(await dev.state(), []))
      const movedShards = [...stats.values()].reduce((n, s) => n + (s.repair?.movedShards ?? 0), 0)
      const rebuiltShards = [...stats.values()].reduce((n, s) => n + (s.repair?.repairedShards ?? 0), 0)
      assert.ok(movedShards > 0, 'Stats count moved shards')
      t.diagnostic(
        `rebalance: ${movedShards} shards moved, ${rebuiltShards} rebuilt, ${movedBytes} paced bytes in ${elapsedS.toFixed(1)} s after the add = ` +
          `${Math.round(movedBytes / elapsedS)} B/s against a cap of ${CAP_BYTES_PER_SECOND} B/s (${((100 * movedBytes) / elapsedS / CAP_BYTES_PER_SECOND).toFixed(0)}%; peak ${(100 * peak).toFixed(0)}% of the bound; ` +
          `3 of the 4 members move, each at cap/4); live client ${live.ok} ops`,
      )

      // Nothing lost: a restarted engine (cold cache) reads everything from the new placement.
      await dev.killEngine()
      assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkRegion(SEED, 0, MIB_SEEDED)], 120_000, nbdshEnv)), { ok: MIB_SEEDED, err: 0, bad: 0 })
      assert.deepEqual(counts(await runOk('nbdsh', ['-u', dev.uri, '-c', checkLive(expected)], 120_000, nbdshEnv)), { ok: LIVE_SLOTS, err: 0, bad: 0 })
    } finally {
      await writeFile(stop, '').catch(() => undefined)
      if (client.exitCode === null) client.kill('SIGKILL')
    }
  })
})
