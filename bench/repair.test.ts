import { it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repairSuite } from './repair.js'
import type { BenchResult } from './report.js'

it('a tiny-scale repair bench rebuilds the lost member and yields every row, disk reference and mesh gets included', async () => {
  const workDir = await mkdtemp(join(tmpdir(), 'cairn-bench-repair-'))
  try {
    const results: BenchResult[] = []
    for await (const r of repairSuite({ scale: 0.05, workDir })) results.push(r)
    const names = results.map((r) => r.name)
    assert.deepEqual(names, ['repair.rebuild.lost-member', 'repair.rebuild.cpu', 'repair.rebuild.per-cpu-second', 'repair.disk.sequential-read', 'repair.rebuild-vs-disk-read', 'repair.mesh.get-64.throughput', 'repair.mesh.get-64.cpu', 'repair.mesh.get-1.throughput', 'repair.mesh.get-1.cpu'])
    for (const r of results) assert.ok(Number.isFinite(r.value) && r.value > 0, `${r.name} = ${r.value}`)
    assert.ok(Number(results[0]?.settings?.rebuiltShards) > 0)
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
})
