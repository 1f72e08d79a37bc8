// The image is built where a Docker engine runs, not here; what can be checked
// here is checked: the Dockerfile passes dockerfilelint, and the checker itself
// flags a Dockerfile with known problems (so a silent linter cannot pass this).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))
const linter = join(root, 'node_modules', '.bin', 'dockerfilelint')

interface LintReport {
  totalIssues: number
  files: Array<{ issues: Array<{ line: string; title: string }> }>
}

function lint(path: string): Promise<LintReport> {
  return new Promise((resolve, reject) => {
    execFile(linter, ['-o', 'json', path], { timeout: 30_000 }, (err, stdout) => {
      // dockerfilelint exits non-zero when it finds issues; the JSON says which.
      try {
        resolve(JSON.parse(stdout) as LintReport)
      } catch {
        reject(err ?? new Error(`dockerfilelint printed no JSON: ${stdout}`))
      }
    })
  })
}

test('the Dockerfile has no dockerfilelint issues', async () => {
  const report = await lint(join(root, 'Dockerfile'))
  assert.equal(report.totalIssues, 0, JSON.stringify(report.files[0]?.issues))
})

test('dockerfilelint flags an untagged base image and an interactive apt-get', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-dockerfile-'))
  try {
    const bad = join(dir, 'Dockerfile')
    await writeFile(bad, 'FROM node\nRUN apt-get install curl\n')
    const titles = (await lint(bad)).files[0]?.issues.map((i) => i.title) ?? []
    assert.ok(titles.includes('Base Image Missing Tag'), titles.join('; '))
    assert.ok(titles.includes('Missing parameter for `apt-get`'), titles.join('; '))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('the runtime image carries what the CSI node plugin runs', async () => {
  const dockerfile = await readFile(join(root, 'Dockerfile'), 'utf8')
  // Multi-stage: compilers stay in the build stage; the runtime copies only its output.
  assert.deepEqual(dockerfile.match(/^FROM .*$/gm), ['FROM node:24-bookworm-slim AS build', 'FROM node:24-bookworm-slim'])
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
  assert.doesNotMatch(runtime, /\b(g\+\+|make)\b/)
  assert.match(runtime, /^COPY --from=build \/src\/dist \.\/dist$/m)
  // One image for every subcommand: the CLI is the entrypoint.
  assert.match(runtime, /^ENTRYPOINT \["node", "\/opt\/cairn\/dist\/cli\/main\.js"\]$/m)
  assert.match(runtime, /^FROM node:24-bookworm-slim$/m)
  // mount: mount, umount and losetup (Debian moved them out of util-linux, which has blkid, blockdev and findmnt).
  for (const pkg of ['nbd-client', 'libnbd-bin', 'e2fsprogs', 'xfsprogs', 'util-linux', 'mount', 'fuse3', 'python3-minimal']) {
    assert.match(runtime, new RegExp(`\\b${pkg}\\b`), `runtime stage lacks ${pkg}`)
  }
  assert.match(runtime, /^USER node$/m)
})
