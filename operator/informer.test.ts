// The informer against the test API server: a watch resumed from a compacted
// resourceVersion gets 410 Gone, relists, turns the gap into events, and goes on.
import { it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { TestApiServer } from '../e2e/test-apiserver/index.js'
import { silentLogger } from '../core/logger.js'
import { Informer, type WatchEventType } from './informer.js'
import { waitFor } from './test-support.js'
import type { KubeObject } from './types.js'

let server: TestApiServer
let dir: string
let core: CoreV1Api
let kc: KubeConfig

before(async () => {
  // No bookmarks during the test: they would carry the watch past the compaction point.
  server = new TestApiServer({ bookmarkIntervalMs: 600_000 })
  await server.start()
  dir = await mkdtemp(join(tmpdir(), 'cairn-informer-'))
  await server.writeKubeconfig(join(dir, 'kubeconfig'))
  kc = new KubeConfig()
  kc.loadFromFile(join(dir, 'kubeconfig'))
  core = kc.makeApiClient(CoreV1Api)
  await core.createNamespace({ body: { metadata: { name: 'ns' } } })
})

after(async () => {
  await server.stop()
  await rm(dir, { recursive: true, force: true })
})

const configMap = (name: string) => core.createNamespacedConfigMap({ namespace: 'ns', body: { metadata: { name }, data: { k: 'v' } } })

it('a watch that gets 410 Gone relists and keeps watching', async () => {
  const seen: [WatchEventType, string][] = []
  const informer = new Informer<KubeObject>(
    {
      kind: 'ConfigMap',
      watchPath: '/api/v1/namespaces/ns/configmaps',
      list: async (token) => (await core.listNamespacedConfigMap({ namespace: 'ns', limit: 2, _continue: token })) as never,
      onChange: (type, obj) => seen.push([type, obj.metadata.name]),
      watchTimeoutSeconds: 1,
      retryBaseMs: 10,
    },
    { kubeConfig: kc, logger: silentLogger() },
  )
  await configMap('before-1')
  await configMap('before-2')
  await configMap('before-3') // three objects, pages of two: the list pages
  await informer.start()
  try {
    await informer.synced
    assert.equal(informer.listCount, 1)
    await configMap('watched')
    await waitFor('the watch event', async () => informer.get('ns/watched') !== undefined)
    await core.deleteNamespacedConfigMap({ name: 'before-1', namespace: 'ns' })
    await waitFor('the delete event', async () => informer.get('ns/before-1') === undefined)
    // A write the watch does not see (another namespace), then compaction: the
    // watch's resourceVersion is now older than any the server keeps, so its
    // resumption (after the 1 s server-side timeout) gets 410 Gone.
    await core.createNamespace({ body: { metadata: { name: 'elsewhere' } } })
    server.compact()
    await waitFor('a relist after 410', async () => informer.listCount >= 2, 10_000)
    assert.ok(seen.some(([t, n]) => t === 'DELETED' && n === 'before-1'), JSON.stringify(seen))
    await configMap('after')
    await waitFor('watching again', async () => informer.get('ns/after') !== undefined)
    assert.deepEqual(informer.list().map((o) => o.metadata.name).sort(), ['after', 'before-2', 'before-3', 'watched'])
  } finally {
    await informer.stop()
  }
})
