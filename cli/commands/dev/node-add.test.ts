import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeIndexesOnDisk, parseNodeAddRequest, readNodeAddedMarker, writeNodeAddedMarker } from './node-add.js'

test('node add requests: valid ones parse, bad ones are InvalidArgumentError', () => {
  const good: Array<[unknown, object]> = [
    [undefined, {}],
    [{}, {}],
    [{ failureDomain: 'rack-2' }, { failureDomain: 'rack-2' }],
    [{ weight: 0.5 }, { weight: 0.5 }],
    [{ failureDomain: 'zone.a', weight: 3 }, { failureDomain: 'zone.a', weight: 3 }],
  ]
  for (const [body, want] of good) assert.deepEqual(parseNodeAddRequest(body), want, JSON.stringify(body))
  const bad: unknown[] = [
    { failureDomain: '' },
    { failureDomain: 'Rack 2' },
    { failureDomain: '-rack' },
    { failureDomain: 'a'.repeat(64) },
    { weight: 0 },
    { weight: -1 },
    { weight: 'heavy' },
    { weight: 2_000_000 },
    { dataDir: '/tmp/x' },
    [],
    'rack-2',
  ]
  for (const body of bad) assert.throws(() => parseNodeAddRequest(body), { name: 'InvalidArgumentError' }, JSON.stringify(body))
})

test('the added marker round-trips; a damaged one is NodeMarkerError, a missing one undefined', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-node-add-'))
  try {
    const path = join(dir, 'nodes', 'node-4', 'added.json')
    assert.equal(await readNodeAddedMarker(path), undefined)
    await writeNodeAddedMarker(path, { failureDomain: 'rack-1', weight: 2 })
    const marker = await readNodeAddedMarker(path)
    assert.equal(marker?.failureDomain, 'rack-1')
    assert.equal(marker?.weight, 2)
    await writeFile(path, '{"addedAt": 5}')
    await assert.rejects(readNodeAddedMarker(path), { name: 'NodeMarkerError' })
    await writeFile(path, 'not json')
    await assert.rejects(readNodeAddedMarker(path), { name: 'NodeMarkerError' })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('node indexes on disk: only node-N directories count, removed ones included', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-node-add-'))
  try {
    assert.deepEqual(await nodeIndexesOnDisk(join(dir, 'missing')), [])
    for (const name of ['node-0', 'node-7', 'node-x', 'other']) await mkdir(join(dir, name))
    await writeFile(join(dir, 'node-7', 'removed.json'), '{}')
    assert.deepEqual((await nodeIndexesOnDisk(dir)).sort((a, b) => a - b), [0, 7])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
