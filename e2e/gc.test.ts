/**
 * Garbage collection against a real `cairn dev` (2+1 on three storage-node
 * processes): data written with nbdcopy, a snapshot, an overwrite, the volume
 * deleted. `cairn gc --grace 0s` must keep everything the snapshot names (a
 * clone of it reads back identical) and a pinned chunk; once the snapshot goes,
 * the nodes' used bytes drop to exactly the pinned chunk's shards.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { chunkCid } from '../core/cid.js'
import { runOk } from '../engine/nbd/testing.js'
import { ShardClient } from '../storage-node/shard-client.js'
import { hasJournal } from '../storage-node/journal/testing.js'
import { Dev, MiB, fetchText, patterned, waitUntil } from './harness.js'

const CHUNK_BYTES = 64 * 1024
const DATA_BYTES = 2 * MiB
const CHUNKS = DATA_BYTES / CHUNK_BYTES

interface GcJson {
  markedChunks: number
  sweptShards: number
  collectedJournals: number
  freedBytes: number
  youngShards: number
  dryRun: boolean
}

describe('garbage collection in cairn dev', () => {
  let dev: Dev
  let work: string
  let clients: ShardClient[] = []

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-e2e-gc-'))
    // The scheduled collection runs too (every 15 s), with a grace no shard of this test outlives: it must never sweep them.
    dev = await Dev.start({ size: '16MiB', dataShards: 2, parityShards: 1, extraArgs: ['--gc-interval', '15s', '--gc-grace', '1h'] })
    clients = (await dev.state()).nodes.map((n) => new ShardClient({ address: n.address }))
  })
  after(async () => {
    for (const c of clients) c.close()
    await dev?.destroy()
    await rm(work, { recursive: true, force: true })
  })

  async function cli(args: string[]): Promise<string> {
    const r = await dev.cli(args)
    assert.equal(r.code, 0, `cairn ${args.join(' ')}: ${r.stderr}${r.stdout}`)
    return r.stdout
  }

  /** Nodes holding a journal directory for volume `uid`. */
  async function journalReplicas(uid: string): Promise<number> {
    assert.ok(uid !== '', 'a volume uid')
    let n = 0
    for (const node of (await dev.state()).nodes) if (await hasJournal(node.dataDir, uid)) n += 1
    return n
  }

  /** Shards of `cid` on every node. */
  async function shardsOf(cid: Uint8Array): Promise<number> {
    let n = 0
    for (const c of clients) n += (await c.listShards({ cidPrefix: cid })).shards.length
    return n
  }

  async function totals(): Promise<{ shards: number; usedBytes: number }> {
    let shards = 0
    let usedBytes = 0
    for (const c of clients) {
      const s = await c.stats()
      shards += s.shardCount
      usedBytes += s.shardBytes
    }
    return { shards, usedBytes }
  }

  async function gc(extra: string[] = []): Promise<GcJson> {
    return JSON.parse(await cli(['gc', '--grace', '0s', '--output', 'json', ...extra])) as GcJson
  }

  test('a deleted volume with a snapshot: gc keeps what the snapshot and a pin name, then frees the rest once the snapshot goes', async () => {
    const first = patterned(DATA_BYTES, 61)
    const second = patterned(DATA_BYTES, 62)
    const cidOf = (data: Buffer, chunk: number) => chunkCid(data.subarray(chunk * CHUNK_BYTES, (chunk + 1) * CHUNK_BYTES))
    const [firstPath, secondPath] = [join(work, 'first.img'), join(work, 'second.img')]
    await writeFile(firstPath, first)
    await writeFile(secondPath, second)

    await cli(['volume', 'create', 'work', '--size', '8MiB'])
    await runOk('nbdcopy', ['--flush', firstPath, dev.uriOf('work')], 120_000)
    await cli(['snapshot', 'create', 'snap', '--volume', 'work'])
    await runOk('nbdcopy', ['--flush', secondPath, dev.uriOf('work')], 120_000)
    const pinned = cidOf(second, 0)
    await cli(['pin', 'add', pinned.toString(), '--note', 'kept by hand'])
    // dev's own volume is attached (and so journaled) on its first connection.
    await runOk('nbdinfo', [dev.uri], 60_000)
    const uids = new Map((JSON.parse(await cli(['volume', 'list', '--output', 'json'])) as Array<{ name: string; uid: string }>).map((v) => [v.name, v.uid]))
    const [workUid, demoUid] = [uids.get('work') ?? '', uids.get('demo') ?? '']
    const workJournals = await journalReplicas(workUid)
    assert.ok(workJournals >= 1, 'the written volume has journal replicas on the nodes')
    await cli(['volume', 'delete', 'work'])

    assert.equal(await shardsOf(cidOf(second, 1).bytes), 3, 'before gc: every shard of an overwritten chunk is stored')
    const dry = await gc(['--dry-run'])
    assert.equal(dry.dryRun, true)
    assert.equal(await shardsOf(cidOf(second, 1).bytes), 3, 'a dry run deletes nothing')
    assert.equal(dry.collectedJournals, workJournals, 'the dry run counts the deleted volume\'s journal replicas')
    assert.equal(await journalReplicas(workUid), workJournals, 'and deletes none')

    const before = await totals()
    const report = await gc()
    // The second generation's chunks (less the pinned one) and the volume's own manifest pages go.
    assert.ok(report.sweptShards >= (CHUNKS - 1) * 3, `swept ${report.sweptShards}`)
    assert.equal(report.sweptShards, dry.sweptShards, 'the dry run predicted the sweep')
    assert.equal(report.collectedJournals, workJournals)
    assert.equal(await journalReplicas(workUid), 0, 'the deleted volume\'s journals are gone from every node')
    assert.ok((await journalReplicas(demoUid)) >= 1, 'the live volume keeps its journal')
    const afterFirst = await totals()
    assert.equal(before.usedBytes - afterFirst.usedBytes, report.freedBytes)
    assert.equal(await shardsOf(cidOf(second, 1).bytes), 0, 'an unreferenced chunk is swept')
    assert.equal(await shardsOf(pinned.bytes), 3, 'the pinned chunk survives')
    for (const chunk of [0, CHUNKS / 2, CHUNKS - 1]) assert.equal(await shardsOf(cidOf(first, chunk).bytes), 3, `snapshot chunk ${chunk} survives`)

    await cli(['volume', 'clone', 'restored', '--from-snapshot', 'snap'])
    const back = join(work, 'back.img')
    await runOk('nbdcopy', [dev.uriOf('restored'), back], 120_000)
    assert.ok((await readFile(back)).subarray(0, DATA_BYTES).equals(first), 'the snapshot reads back identical after gc')

    await cli(['volume', 'delete', 'restored'])
    await cli(['snapshot', 'delete', 'snap'])
    const last = await gc()
    assert.ok(last.sweptShards >= CHUNKS * 3, `swept ${last.sweptShards}`)
    // A node's repairer may rebuild a shard of a chunk that another node had already swept while this
    // node's sweep was still running: that copy is younger than the cutoff and goes at the next run.
    let remaining = await totals()
    for (let run = 0; run < 3 && remaining.shards > 3; run++) {
      await gc()
      remaining = await totals()
    }
    const left: string[] = []
    for (const c of clients) for (const s of (await c.listShards()).shards) left.push(`${CID.decode(s.address.chunkCid).toString()}#${s.address.index}`)
    assert.equal(remaining.shards, 3, `only the pinned chunk's three shards remain; left: ${left.join(', ')}`)
    let pinnedBytes = 0
    for (const c of clients) for (const s of (await c.listShards({ cidPrefix: pinned.bytes })).shards) pinnedBytes += s.sizeBytes
    assert.equal(remaining.usedBytes, pinnedBytes, 'used bytes drop to what remains referenced')

    await cli(['pin', 'rm', pinned.toString()])
    assert.deepEqual(JSON.parse(await cli(['pin', 'ls', '--output', 'json'])), [])
    await gc()
    assert.equal((await totals()).shards, 0, 'unpinned, the last chunk goes too')
  })

  test('cairn pin and cairn gc refuse bad input with typed errors and exit codes', async () => {
    const unpinned = chunkCid(Buffer.from('never pinned')).toString()
    const cases: Array<[string[], number, string]> = [
      [['pin', 'add', 'not-a-cid'], 2, 'InvalidArgumentError'],
      [['pin', 'rm', unpinned], 1, 'NotFoundError'],
      [['pin', 'add', unpinned, '--block-store', 'ghost'], 1, 'NotFoundError'],
      [['pin', 'ls', 'extra'], 2, 'CliUsageError'],
      [['gc', '--grace', 'soon'], 2, 'ConfigError'],
      [['gc', '--block-store', 'ghost'], 1, 'NotFoundError'],
    ]
    for (const [args, code, name] of cases) {
      const r = await dev.cli([...args, '--output', 'json'])
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
      assert.equal((JSON.parse(r.stdout) as { error: { name: string } }).error.name, name, args.join(' '))
    }
  })

  test('cairn dev collects on its schedule and exports the cairn_gc_* metrics on its status page', async () => {
    const url = `${(await dev.state()).statusUrl}metrics`
    const text = await waitUntil(async () => {
      const t = await fetchText(url)
      return /cairn_gc_runs_total\{[^}]*outcome="succeeded"[^}]*\} [1-9]/.test(t) ? t : undefined
    }, 120_000, 'a successful scheduled collection in the dev metrics')
    for (const name of ['cairn_gc_freed_bytes_total', 'cairn_gc_swept_shards_total', 'cairn_gc_marked_chunks', 'cairn_gc_last_completion_timestamp_seconds', 'cairn_gc_mark_duration_seconds_count', 'cairn_gc_sweep_duration_seconds_count']) {
      assert.ok(text.includes(name), `${name} exported`)
    }
  })
})
