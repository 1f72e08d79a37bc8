import { it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { shardStoreSuite } from './shard-store.js'
import type { BenchResult } from './report.js'

it('with prefillShards every store round starts from the prefilled template and ends holding prefill + written shards', async () => {
  const workDir = await mkdtemp(join(tmpdir(), 'cairn-bench-shard-store-'))
  try {
    const results: BenchResult[] = []
    for await (const r of shardStoreSuite({ scale: 0.05, workDir, prefillShards: 2000 })) results.push(r)
    const names = results.map((r) => r.name)
    assert.equal(names[0], 'shard-store.prefill')
    assert.ok(names.includes('shard-store.write.store') && names.includes('shard-store.write.grpc') && names.includes('shard-store.read.grpc-getshards'), names.join(', '))
    for (const r of results) assert.equal(r.settings?.prefillShards, 2000, r.name)
    const store = results.find((r) => r.name === 'shard-store.write.store')
    // 0.05 × 96 batches rounds up to the bench's floor of 8 batches of 64 shards.
    const written = Number(store?.settings?.batches) * Number(store?.settings?.shardsPerBatch)
    assert.equal(written, 8 * 64)
    assert.equal(store?.settings?.shardsBeforeRound, 2000)
    assert.equal(store?.settings?.shardsAfterRound, 2000 + written)
    // The template and every round's copy are gone when the suite ends.
    assert.deepEqual(await readdir(workDir), [])
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
})

it('a negative or fractional prefillShards is an InvalidArgumentError before anything runs', async () => {
  for (const prefillShards of [-1, 1.5, Number.NaN]) {
    await assert.rejects(
      async () => {
        for await (const r of shardStoreSuite({ scale: 0.05, workDir: '/nonexistent-cairn-bench', prefillShards })) assert.fail(`yielded ${r.name}`)
      },
      { name: 'InvalidArgumentError' },
    )
  }
})
