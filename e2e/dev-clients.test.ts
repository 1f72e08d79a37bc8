/**
 * `cairn dev` against real clients: nbdinfo, qemu-img and nbdcopy with an ext4 image,
 * the volume and snapshot CLI (snapshot, write more, clone), and the status page.
 * One dev (4+2 on six storage-node processes) serves every test in this file.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run, runOk } from '../engine/nbd/testing.js'
import { Dev, MiB, fetchText, patterned } from './harness.js'

describe('cairn dev with real NBD clients', () => {
  let dev: Dev
  let work: string

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-e2e-work-'))
    dev = await Dev.start({ size: '256MiB' })
  })
  after(async () => {
    await dev?.destroy()
    await rm(work, { recursive: true, force: true })
  })

  test('nbdinfo shows the export, its size and flags; --map reports never-written ranges as holes', async () => {
    const info = JSON.parse(await runOk('nbdinfo', ['--json', dev.uri])) as { exports: Array<Record<string, unknown>> }
    const exp = info.exports[0] as Record<string, unknown>
    assert.equal(exp['export-name'], 'demo')
    assert.equal(exp['export-size'], 256 * MiB)
    for (const flag of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn']) assert.equal(exp[flag], true, flag)
    assert.equal(exp.is_read_only, false)
    // Write 1 MiB at 8 MiB, flush, and map: everything else must be a hole.
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x5a ${8 * MiB} ${MiB}`, '-c', 'flush', dev.uri])
    const map = (await runOk('nbdinfo', ['--map', dev.uri]))
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .map(([off, len, type]) => ({ off: Number(off), len: Number(len), hole: (Number(type) & 1) === 1 }))
    const covered = map.reduce((n, e) => n + e.len, 0)
    assert.equal(covered, 256 * MiB)
    const dataAt = (off: number) => map.find((e) => e.off <= off && off < e.off + e.len)
    assert.equal(dataAt(8 * MiB)?.hole, false, 'written range is data')
    assert.equal(dataAt(200 * MiB)?.hole, true, 'never-written range is a hole')
  })

  test('an ext4 image from mke2fs -d goes in with qemu-img convert, comes back with nbdcopy, passes e2fsck, files match', async () => {
    const tree = join(work, 'tree')
    await mkdir(join(tree, 'a/b/c'), { recursive: true })
    const files: Record<string, Buffer> = {
      'hello.txt': Buffer.from('hello from cairn\n'),
      'a/big.bin': patterned(5 * MiB + 123, 11),
      'a/b/c/deep.bin': patterned(300_000, 12),
    }
    for (const [name, data] of Object.entries(files)) await writeFile(join(tree, name), data)
    const image = join(work, 'fs.img')
    await runOk('mke2fs', ['-q', '-t', 'ext4', '-F', '-d', tree, image, '32M'])
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', image, dev.uri], 120_000)
    const back = join(work, 'back.img')
    await runOk('nbdcopy', [dev.uri, back], 120_000)
    await runOk('truncate', ['-s', String(32 * MiB), back])
    assert.ok((await readFile(image)).equals(await readFile(back)), 'image bytes read back unchanged')
    await runOk('e2fsck', ['-fn', back])
    for (const [name, data] of Object.entries(files)) {
      const out = join(work, `out-${name.replaceAll('/', '_')}`)
      await runOk('debugfs', ['-R', `dump /${name} ${out}`, back])
      assert.ok((await readFile(out)).equals(data), `${name} matches`)
    }
  })

  test('snapshot, write more, clone the snapshot: the clone shows the data as of the snapshot', async () => {
    const offset = 64 * MiB
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x11 ${offset} ${2 * MiB}`, dev.uri])
    // No flush by the client: the snapshot itself must include every acknowledged write.
    const snap = await dev.cli(['snapshot', 'create', 'before', '--volume', 'demo', '--output', 'json'])
    assert.equal(snap.code, 0, snap.stderr + snap.stdout)
    assert.equal(JSON.parse(snap.stdout).status.readyToUse, true)
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x22 ${offset} ${MiB}`, '-c', 'flush', dev.uri])
    const clone = await dev.cli(['volume', 'clone', 'restored', '--from-snapshot', 'before', '--output', 'json'])
    assert.equal(clone.code, 0, clone.stderr + clone.stdout)
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x11 ${offset} ${2 * MiB}`, dev.uriOf('restored')])
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x22 ${offset} ${MiB}`, '-c', `read -P 0x11 ${offset + MiB} ${MiB}`, dev.uri])
    // A clone of the live volume (through the engine) sees the newest data.
    const live = await dev.cli(['volume', 'clone', 'live-copy', '--from-volume', 'demo'])
    assert.equal(live.code, 0, live.stderr)
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x22 ${offset} ${MiB}`, dev.uriOf('live-copy')])
    const listed = JSON.parse((await dev.cli(['snapshot', 'list', '--volume', 'demo', '--output', 'json'])).stdout) as Array<{ name: string }>
    assert.deepEqual(listed.map((s) => s.name), ['before'])
    for (const args of [['volume', 'delete', 'restored'], ['volume', 'delete', 'live-copy'], ['snapshot', 'delete', 'before']]) {
      const r = await dev.cli(args)
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    }
    const names = (JSON.parse((await dev.cli(['volume', 'list', '--output', 'json'])).stdout) as Array<{ name: string }>).map((v) => v.name)
    assert.deepEqual(names, ['demo'])
  })

  test('the volume and snapshot CLI refuses bad input with typed errors and exit codes', async () => {
    const cases: Array<[string[], number, string]> = [
      [['volume', 'create', 'x', '--size', 'lots'], 2, 'ConfigError'],
      [['volume', 'create', 'x'], 2, 'CliUsageError'],
      [['volume', 'create', 'Bad_Name', '--size', '1MiB'], 2, 'InvalidArgumentError'],
      [['volume', 'create', 'odd', '--size', '1000'], 2, 'InvalidArgumentError'],
      [['volume', 'create', 'x', '--size', '1MiB', '--policy', 'nope'], 1, 'NotFoundError'],
      [['volume', 'resize', 'demo', '--size', '1MiB'], 2, 'InvalidArgumentError'],
      [['volume', 'resize', 'ghost', '--size', '1GiB'], 1, 'NotFoundError'],
      [['volume', 'clone', 'c', '--from-volume', 'demo', '--from-snapshot', 's'], 2, 'CliUsageError'],
      [['volume', 'clone', 'c', '--from-snapshot', 'ghost'], 1, 'NotFoundError'],
      [['snapshot', 'create', 's'], 2, 'CliUsageError'],
      [['snapshot', 'create', 's', '--volume', 'ghost'], 1, 'NotFoundError'],
      [['volume', 'list', '--bogus'], 2, 'CliUsageError'],
    ]
    for (const [args, code, name] of cases) {
      const r = await dev.cli([...args, '--output', 'json'])
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
      assert.equal(JSON.parse(r.stdout).error.name, name, args.join(' '))
    }
    const missing = await run(process.execPath, [join(import.meta.dirname, '../cli/main.js'), 'volume', 'list', '--data-dir', join(work, 'nowhere')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /no control plane/)
    // Deleting what does not exist succeeds; the volume in use stays.
    assert.equal((await dev.cli(['volume', 'delete', 'ghost'])).code, 0)
    assert.equal((await dev.cli(['snapshot', 'delete', 'ghost'])).code, 0)
  })

  test('dev.json and the status page show the volume, six storage nodes up and metrics links', async () => {
    const state = await dev.state()
    assert.equal(state.nodes.length, 6)
    assert.ok(state.nodes.every((n) => n.state === 'up'))
    assert.equal(state.engine.state, 'up')
    const page = await fetchText(state.statusUrl)
    assert.match(page, /<td>demo<\/td><td>256 MiB<\/td>/)
    assert.equal((page.match(/class="up">up</g) ?? []).length, 7)
    const status = JSON.parse(await fetchText(`${state.statusUrl}status.json`)) as { volumes: Array<{ name: string; epoch: number }> }
    assert.ok(status.volumes.some((v) => v.name === 'demo' && v.epoch >= 1))
    const metrics = await fetchText(`http://${state.engine.adminAddress}/metrics`)
    assert.match(metrics, /cairn_nbd_/)
    assert.match(await fetchText(`http://${state.nodes[0]?.metricsAddress}/metrics`), /cairn_/)
  })
})
