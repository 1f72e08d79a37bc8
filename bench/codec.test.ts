import { it } from 'node:test'
import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { codecSuite } from './codec.js'
import type { BenchResult } from './report.js'

it('a tiny-scale codec bench yields well-formed results for every row', async () => {
  const results: BenchResult[] = []
  for await (const r of codecSuite({ scale: 0.002, workDir: tmpdir() })) results.push(r)
  for (const r of results) {
    assert.match(r.name, /^[a-z0-9.+-]+$/i, r.name)
    assert.ok(Number.isFinite(r.value) && r.value > 0, `${r.name} = ${r.value}`)
    assert.ok(r.unit === 'GB/s' || r.unit === 'ms', `${r.name} unit ${r.unit}`)
  }
  const names = results.map((r) => `${r.name} ${r.settings?.impl ?? ''}`)
  for (const impl of ['ts', 'wasm-simd']) {
    for (const km of ['4+2', '8+3', '1+2']) {
      assert.ok(names.includes(`rs.encode.${km}.64KiB ${impl}`), `missing encode ${km} ${impl}`)
      assert.ok(names.includes(`rs.reconstruct.${km}.64KiB ${impl}`), `missing reconstruct ${km} ${impl}`)
    }
  }
  const expected = ['hash.sha2-256.raw.64KiB', 'cid.sha2-256.64KiB', 'cid.blake3.64KiB', 'rs.encode-batch.4+2.64KiB', 'hash+encode.4+2.64KiB', 'pool.hash+encode.4+2.64KiB']
  for (const name of [...expected, 'pool.event-loop-delay.p99', 'inline.event-loop-delay.p99']) {
    assert.ok(results.some((r) => r.name === name), `missing ${name}`)
  }
  const encode = results.find((r) => r.name === 'rs.encode.4+2.64KiB')
  assert.ok(encode?.settings !== undefined)
  const { k, m, chunkSizeBytes, impl, threads, reps, min, max } = encode.settings
  assert.deepEqual({ k, m, chunkSizeBytes, impl, threads, reps }, { k: 4, m: 2, chunkSizeBytes: 65536, impl: 'ts', threads: 1, reps: 5 })
  // The value is the median of the repetitions, so it lies within their spread.
  assert.ok(typeof min === 'number' && typeof max === 'number' && min <= encode.value + 1e-3 && encode.value <= max + 1e-3, `${min} <= ${encode.value} <= ${max}`)
})
