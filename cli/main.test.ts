import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url))

/** Runs `cairn` and returns its exit code and output; never rejects on a non-zero exit. */
function cairn(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number((err as { code?: number }).code), stdout, stderr })
    })
  })
}

test('--help on a command prints its summary and exits 0 without running it', async () => {
  const r = await cairn('bench', '--help')
  assert.equal(r.code, 0)
  assert.match(r.stdout, /^cairn bench: /)
  assert.equal(r.stderr, '')
})

test('an unknown flag is a usage error (exit 2, one line and the summary), not a stack trace', async () => {
  const r = await cairn('bench', '--no-such-flag')
  assert.equal(r.code, 2)
  assert.match(r.stderr, /^cairn bench: .*--no-such-flag/)
  assert.doesNotMatch(r.stderr, /\n\s+at /)
})

test('an unknown command exits 2', async () => {
  const r = await cairn('no-such-command')
  assert.equal(r.code, 2)
  assert.match(r.stderr, /unknown command/)
})
