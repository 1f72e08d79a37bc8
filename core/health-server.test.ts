import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Counter } from 'prom-client'
import { HealthServer, createRegistry, parseHostPort } from './health-server.js'
import { silentLogger } from './logger.js'

test('health server answers healthz, readyz by its readiness probe, and metrics', async () => {
  const registry = createRegistry({ service: 'test' })
  new Counter({ name: 'cairn_test_things_total', help: 'things', registers: [registry] }).inc(3)
  let reason: string | undefined = 'warming up'
  const server = new HealthServer({ listen: '127.0.0.1:0', readiness: () => reason }, { logger: silentLogger(), registry })
  await server.start()
  try {
    const base = `http://${server.address()}`
    assert.equal((await fetch(`${base}/healthz`)).status, 200)
    const notReady = await fetch(`${base}/readyz`)
    assert.equal(notReady.status, 503)
    assert.match(await notReady.text(), /warming up/)
    reason = undefined
    assert.equal((await fetch(`${base}/readyz`)).status, 200)
    const metrics = await (await fetch(`${base}/metrics`)).text()
    assert.match(metrics, /^cairn_test_things_total\{service="test"\} 3$/m)
    assert.match(metrics, /cairn_process_cpu_seconds_total/)
  } finally {
    await server.stop()
  }
})

test('parseHostPort accepts IPv4, names and bracketed IPv6, refuses the rest', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:80'), { host: '127.0.0.1', port: 80 })
  assert.deepEqual(parseHostPort('[::1]:9000'), { host: '::1', port: 9000 })
  for (const bad of ['127.0.0.1', ':80', 'host:99999', '::1:80']) {
    assert.throws(() => parseHostPort(bad), { name: 'InvalidArgumentError' }, bad)
  }
})
