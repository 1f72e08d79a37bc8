#!/usr/bin/env node
// Runs the compiled test files with node's test runner. Arguments filter by path
// substring: `node scripts/run-tests.mjs storage-node codec`.
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'

const root = new URL('..', import.meta.url).pathname
const dist = join(root, 'dist')

function* walk(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) yield* walk(path)
    else if (entry.endsWith('.test.js')) yield path
  }
}

const filters = process.argv.slice(2)
const files = [...walk(dist)]
  .filter((f) => filters.length === 0 || filters.some((x) => relative(dist, f).includes(x)))
  .sort()
if (files.length === 0) {
  console.error('run-tests: no test files matched; did the build run?')
  process.exit(1)
}
const concurrency = Math.max(1, Math.min(2, availableParallelism()))
// Files named *.serial.test.js measure wall-clock time (benchmark smoke tests): they run
// after the others, one at a time, so a neighbour's load cannot push them past their bound.
const serial = files.filter((f) => f.endsWith('.serial.test.js'))
const parallel = files.filter((f) => !serial.includes(f))
let status = 0
for (const [group, n] of [
  [parallel, concurrency],
  [serial, 1],
]) {
  if (group.length === 0) continue
  const result = spawnSync(
    process.execPath,
    // A hung test fails after seven minutes instead of eating CI's whole budget; the
    // heaviest e2e files take about 3 minutes on a loaded 2-core machine.
    ['--test', `--test-concurrency=${n}`, '--test-timeout=420000', '--test-reporter=spec', ...group],
    { stdio: 'inherit', cwd: root },
  )
  if (result.status !== 0) status = result.status ?? 1
}
process.exit(status)
