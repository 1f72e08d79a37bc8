/** `cairn bench nbd` at a tiny scale runs all three servers and emits well-formed results. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runCairn } from './harness.js'

test('cairn bench nbd --scale 0.01 measures cairn, qemu-nbd and nbdkit and reports ratios, CPU per operation, snapshot latency and engine memory', async () => {
  // About 40 s on a quiet 2-core machine. The runner gives *.serial.test files the machine
  // to themselves; the bound still leaves room for a slow one (the runner stops a file at 420 s).
  const r = await runCairn(['bench', 'nbd', '--scale', '0.01'], 280_000)
  // Results stream as they are measured, so on failure stdout shows how far the run got.
  assert.equal(r.code, 0, `stderr:\n${r.stderr}\nstdout so far:\n${r.stdout}`)
  const results = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { name: string; value: number; unit: string })
  const byName = new Map(results.map((x) => [x.name, x]))
  const workloads = ['seq-write-1M-qd8', 'seq-read-1M-qd8', 'rand-read-4k-qd32', 'rand-write-4k-qd32', 'write-4k-flush32']
  for (const server of ['cairn', 'qemu-nbd', 'nbdkit-memory']) {
    for (const w of workloads) {
      const x = byName.get(`nbd.${server}.${w}`)
      assert.ok(x !== undefined && Number.isFinite(x.value) && x.value > 0, `${server} ${w}`)
      assert.equal(x.unit, w.startsWith('seq') ? 'MB/s' : 'IOPS')
    }
  }
  for (const w of workloads) assert.equal(byName.get(`nbd.cairn.${w}.vs-qemu-nbd`)?.unit, 'ratio')
  // CPU per MiB or per operation of each cairn workload, for the engine and for the storage nodes together.
  // At this scale a read from the cache can end within one 10 ms clock tick, so zero is a valid reading.
  for (const w of workloads) {
    for (const who of ['engine', 'node']) {
      const x = byName.get(`nbd.cairn.${w}.${who}-cpu`)
      assert.ok(x !== undefined && Number.isFinite(x.value) && x.value >= 0, `${who} CPU of ${w}`)
      assert.equal(x.unit, w.startsWith('seq') ? 'ms/MiB' : 'us/op')
    }
  }
  for (const name of ['nbd.cairn.snapshot.after-fill', 'nbd.cairn.snapshot.clean', 'nbd.cairn.fill', 'nbd.cairn.fill.engine-cpu']) assert.ok((byName.get(name)?.value ?? 0) > 0, name)
  const rss = byName.get('nbd.cairn.engine.rss')
  assert.ok(rss !== undefined && rss.unit === 'MiB' && rss.value > 10)
})
