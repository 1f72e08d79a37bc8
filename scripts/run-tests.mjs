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
const result = spawnSync(
  process.execPath,
  // A hung test fails after five minutes instead of eating CI's whole budget.
  ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', '--test-reporter=spec', ...files],
  { stdio: 'inherit', cwd: root },
)
process.exit(result.status ?? 1)
