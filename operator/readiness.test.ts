// Operator readiness: a leader whose caches cannot sync (here: the API server
// refuses to list pods, as a Role without pod access does) is not ready, and
// becomes ready once the list succeeds.
import { it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { TestApiServer, type RequestAttributes } from '../e2e/test-apiserver/index.js'
import { Operator } from './operator.js'
import { NAMESPACE, waitFor } from './test-support.js'

let server: TestApiServer
let dir: string
let operator: Operator
let podListsAllowed = false
let podListsRefused = 0

function authorize(a: RequestAttributes): boolean {
  if (a.resource !== 'pods' || a.verb !== 'list' || podListsAllowed) return true
  podListsRefused++
  return false
}

before(async () => {
  server = new TestApiServer({ bookmarkIntervalMs: 100, authorize })
  await server.start()
  await server.installCrds(fileURLToPath(new URL('../../crds/', import.meta.url)))
  dir = await mkdtemp(join(tmpdir(), 'cairn-readiness-'))
  await server.writeKubeconfig(join(dir, 'kubeconfig'))
  const kc = new KubeConfig()
  kc.loadFromFile(join(dir, 'kubeconfig'))
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } })
  operator = new Operator(
    { namespace: NAMESPACE, identity: 'readiness-operator', image: 'cairn:test', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200, watchTimeoutSeconds: 5 },
    { kubeConfig: kc, logger: silentLogger(), registry: new Registry() },
  )
})

after(async () => {
  await operator.stop()
  await server.stop()
  await rm(dir, { recursive: true, force: true })
})

it('a leader is not ready while a cache cannot list, and ready once it can; a standby is ready', async () => {
  assert.equal(operator.readiness(), undefined, 'not leading: ready')
  await operator.start()
  await waitFor('leadership', async () => operator.elector.isLeader())
  // Two refused lists: the informer keeps retrying, and the leader keeps saying why it is not ready.
  await waitFor('two refused pod lists', async () => podListsRefused >= 2)
  assert.equal(typeof operator.readiness(), 'string')
  assert.equal(operator.current?.cachesSynced, false)
  podListsAllowed = true
  await waitFor('ready once the caches sync', async () => operator.readiness() === undefined, 20_000)
  assert.equal(operator.current?.cachesSynced, true)
})
