// The real kubectl against the test API server: what an operator of a Cairn
// cluster types must work, with the CRDs from crds/ installed the kubectl way.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestApiServer } from './server.js'

const crdDir = fileURLToPath(new URL('../../../crds/', import.meta.url))
let server: TestApiServer
let dir: string
let kubeconfig: string

interface Result {
  code: number
  stdout: string
  stderr: string
}

function kubectl(args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile('kubectl', ['--kubeconfig', kubeconfig, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input)
  assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout
}

function policyYaml(name: string, k: number, m: number, extra = ''): string {
  return `apiVersion: cairn.dev/v1alpha1\nkind: StoragePolicy\nmetadata:\n  name: ${name}\nspec:\n  blockStore: default\n  dataShards: ${k}\n  parityShards: ${m}\n${extra}`
}

before(async () => {
  server = new TestApiServer({ bookmarkIntervalMs: 200 })
  await server.start()
  dir = await mkdtemp(join(tmpdir(), 'cairn-kubectl-'))
  kubeconfig = join(dir, 'kubeconfig')
  await server.writeKubeconfig(kubeconfig)
})

after(async () => {
  await server.stop()
  await rm(dir, { recursive: true, force: true })
})

test('kubectl apply -f crds/ installs the four CRDs, and re-applying is unchanged', async () => {
  const out = await ok(['apply', '-f', crdDir])
  for (const name of ['blockstores', 'storagepolicies', 'volumes', 'snapshots']) assert.match(out, new RegExp(`${name}.cairn.dev created`))
  assert.match(await ok(['apply', '-f', crdDir]), /storagepolicies.cairn.dev unchanged/)
  const crds = await ok(['get', 'crd', '-o', 'name'])
  assert.equal(crds.trim().split('\n').length, 4)
})

test('valid CRs apply and print their columns, also by short name', async () => {
  const file = join(dir, 'policy.yaml')
  await writeFile(file, policyYaml('ec-4-2', 4, 2))
  assert.match(await ok(['apply', '-f', file]), /storagepolicy.cairn.dev\/ec-4-2 created/)
  const table = await ok(['get', 'storagepolicies'])
  const [header, row] = table.trim().split('\n')
  assert.deepEqual(header?.split(/\s+/), ['NAME', 'K', 'M', 'CHUNK', 'SATISFIABLE', 'AGE'])
  assert.match(row ?? '', /^ec-4-2\s+4\s+2\s+65536\s+/)
  assert.match(await ok(['get', 'csp', 'ec-4-2', '-o', 'jsonpath={.spec.hash}']), /^sha2-256$/)
  await ok(['apply', '-f', '-'], 'apiVersion: cairn.dev/v1alpha1\nkind: Volume\nmetadata: {name: vol-a}\nspec: {blockStore: default, storagePolicy: ec-4-2, sizeBytes: 1073741824}\n')
  assert.deepEqual((await ok(['get', 'cvol'])).split('\n')[0]?.trim().split(/\s+/), ['NAME', 'SIZE', 'POLICY', 'ATTACHED', 'HEALTH', 'AGE'])
  await ok(['apply', '-f', '-'], 'apiVersion: cairn.dev/v1alpha1\nkind: BlockStore\nmetadata: {name: default}\nspec: {}\n')
  assert.deepEqual((await ok(['get', 'cbs'])).split('\n')[0]?.trim().split(/\s+/), ['NAME', 'READY', 'NODES', 'CAPACITY', 'USED', 'AGE'])
  assert.deepEqual((await ok(['get', 'cbs', '-o', 'wide'])).split('\n')[0]?.trim().split(/\s+/), ['NAME', 'READY', 'NODES', 'ELIGIBLE', 'CAPACITY', 'USED', 'BACKLOG', 'AGE'])
  await ok(['apply', '-f', '-'], 'apiVersion: cairn.dev/v1alpha1\nkind: Snapshot\nmetadata: {name: snap-a}\nspec: {volume: vol-a}\n')
  assert.deepEqual((await ok(['get', 'csnap'])).split('\n')[0]?.trim().split(/\s+/), ['NAME', 'VOLUME', 'SIZE', 'READY', 'AGE'])
})

test('invalid CRs are refused with the rule that failed', async () => {
  const tooWide = await kubectl(['apply', '-f', '-'], policyYaml('too-wide', 30, 10))
  assert.notEqual(tooWide.code, 0)
  assert.match(tooWide.stderr, /dataShards \+ parityShards must not exceed 32/)
  const oddChunk = await kubectl(['apply', '-f', '-'], policyYaml('odd-chunk', 4, 2, '  chunkSizeBytes: 3000\n'))
  assert.notEqual(oddChunk.code, 0)
  assert.match(oddChunk.stderr, /is invalid: spec.chunkSizeBytes/)
  const immutable = await kubectl(['apply', '-f', '-'], policyYaml('ec-4-2', 5, 2))
  assert.notEqual(immutable.code, 0)
  assert.match(immutable.stderr, /dataShards is immutable/)
  const unknown = await kubectl(['apply', '-f', '-'], policyYaml('typo', 4, 2, '  dataShard: 4\n'))
  assert.notEqual(unknown.code, 0)
  assert.match(unknown.stderr, /unknown field "spec.dataShard"/)
  assert.equal((await kubectl(['get', 'csp', 'too-wide'])).code, 1, 'nothing was stored')
  const dotted = await kubectl(['apply', '-f', '-'], 'apiVersion: cairn.dev/v1alpha1\nkind: BlockStore\nmetadata: {name: fast.ssd}\nspec: {}\n')
  assert.notEqual(dotted.code, 0)
  assert.match(dotted.stderr, /BlockStore name must be at most 49 characters/)
})

test('kubectl label, patch --type=merge and --type=json change the object', async () => {
  await ok(['label', 'csp', 'ec-4-2', 'tier=gold'])
  assert.match(await ok(['get', 'csp', '-l', 'tier=gold', '-o', 'name']), /ec-4-2/)
  assert.equal((await ok(['get', 'csp', '-l', 'tier!=gold', '-o', 'name'])).trim(), '')
  await ok(['patch', 'csp', 'ec-4-2', '--type=merge', '-p', '{"spec":{"scrubIntervalSeconds":3600}}'])
  await ok(['patch', 'csp', 'ec-4-2', '--type=json', '-p', '[{"op":"replace","path":"/spec/repairBandwidthBytesPerSecond","value":1048576}]'])
  const spec = JSON.parse(await ok(['get', 'csp', 'ec-4-2', '-o', 'json'])).spec as Record<string, unknown>
  assert.equal(spec.scrubIntervalSeconds, 3600)
  assert.equal(spec.repairBandwidthBytesPerSecond, 1048576)
  const refused = await kubectl(['patch', 'csp', 'ec-4-2', '--type=merge', '-p', '{"spec":{"dataShards":8}}'])
  assert.match(refused.stderr, /dataShards is immutable/)
})

test('kubectl get -w sees a change and a deletion', async () => {
  const watcher = spawn('kubectl', ['--kubeconfig', kubeconfig, 'get', 'csp', '-w', '--output-watch-events', '--request-timeout=15s'])
  // One listener for the whole test: a flowing stream drops data nobody listens to.
  let seen = ''
  const waiters = new Set<() => void>()
  watcher.stdout.on('data', (chunk: Buffer) => {
    seen += chunk.toString()
    for (const check of [...waiters]) check()
  })
  const waitFor = (pattern: RegExp): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`kubectl get -w never printed ${pattern}; got:\n${seen}`))
      }, 10_000)
      const check = (): void => {
        if (!pattern.test(seen)) return
        clearTimeout(timer)
        waiters.delete(check)
        resolve()
      }
      waiters.add(check)
      check()
    })
  try {
    await waitFor(/ADDED\s+ec-4-2/)
    await ok(['label', 'csp', 'ec-4-2', 'tier=silver', '--overwrite'])
    await waitFor(/MODIFIED\s+ec-4-2/)
    assert.match(await ok(['delete', 'csp', 'ec-4-2']), /deleted/)
    await waitFor(/DELETED\s+ec-4-2/)
  } finally {
    watcher.kill()
  }
  assert.equal((await kubectl(['get', 'csp', 'ec-4-2'])).code, 1)
})
