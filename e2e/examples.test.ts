// The README's CRD examples (examples/*.yaml) must stay valid: applied with the
// real kubectl to the test API server, which validates them against crds/.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestApiServer } from './test-apiserver/index.js'

const crdDir = fileURLToPath(new URL('../../crds/', import.meta.url))
const exampleDir = fileURLToPath(new URL('../../examples/', import.meta.url))

function kubectl(kubeconfig: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('kubectl', ['--kubeconfig', kubeconfig, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

test('every example in examples/ is accepted by the CRD schemas and shows in kubectl get', async () => {
  const server = new TestApiServer()
  await server.start()
  const dir = await mkdtemp(join(tmpdir(), 'cairn-examples-'))
  try {
    const kubeconfig = join(dir, 'kubeconfig')
    await server.writeKubeconfig(kubeconfig)
    assert.equal((await kubectl(kubeconfig, ['apply', '-f', crdDir])).code, 0)
    const applied = await kubectl(kubeconfig, ['apply', '-f', exampleDir])
    assert.equal(applied.code, 0, applied.stderr)
    const names = await kubectl(kubeconfig, ['get', 'blockstores,storagepolicies,volumes,snapshots', '-o', 'name'])
    assert.deepEqual(names.stdout.trim().split('\n').sort(), [
      'blockstore.cairn.dev/default',
      'snapshot.cairn.dev/pgdata-nightly',
      'storagepolicy.cairn.dev/ec-4-2',
      'volume.cairn.dev/pgdata',
      'volume.cairn.dev/pgdata-restored',
    ])
  } finally {
    await server.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
