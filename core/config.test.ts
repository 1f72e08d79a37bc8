import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig, storageNodeConfigSchema } from './config.js'

test('flags win over environment, environment over defaults', () => {
  const config = loadConfig(storageNodeConfigSchema, ['--data-dir', '/d', '--listen', '127.0.0.1:1'], {
    CAIRN_LISTEN: '127.0.0.1:2',
    CAIRN_METRICS_LISTEN: '127.0.0.1:3',
  })
  assert.equal(config.dataDir, '/d')
  assert.equal(config.listen, '127.0.0.1:1')
  assert.equal(config.metricsListen, '127.0.0.1:3')
  assert.equal(config.logLevel, 'info')
})

const invalid: Array<[string, string[]]> = [
  ['missing required data dir', []],
  ['listen without a port', ['--data-dir', '/d', '--listen', 'localhost']],
  ['unknown flag', ['--data-dir', '/d', '--bogus', 'x']],
  ['unknown log level', ['--data-dir', '/d', '--log-level', 'loud']],
]
for (const [goal, argv] of invalid) {
  test(`config refuses ${goal} with ConfigError`, () => {
    assert.throws(() => loadConfig(storageNodeConfigSchema, argv, {}), { name: 'ConfigError' })
  })
}

test('durations parse to milliseconds; a bare number is seconds', async () => {
  const { parseDurationMs } = await import('./config.js')
  assert.equal(parseDurationMs('500ms'), 500)
  assert.equal(parseDurationMs('30s'), 30_000)
  assert.equal(parseDurationMs('10m'), 600_000)
  assert.equal(parseDurationMs('1.5h'), 5_400_000)
  assert.equal(parseDurationMs('600'), 600_000)
  for (const bad of ['', 'soon', '10 minutes', '-1s']) assert.throws(() => parseDurationMs(bad), { name: 'ConfigError' })
})

test('storage-node durability flags: none means a plain node, all resolve, some are refused', async () => {
  const { storageNodeDurability } = await import('./config.js')
  assert.equal(storageNodeDurability(loadConfig(storageNodeConfigSchema, ['--data-dir', '/d'], {})), undefined)
  const argv = ['--data-dir', '/d', '--member-id', 'node-1', '--block-store', 'local', '--mesh-listen', '127.0.0.1:0', '--control-plane', 'local', '--control-plane-path', '/cp.sqlite', '--repair-interval', '5s']
  const durability = storageNodeDurability(loadConfig(storageNodeConfigSchema, argv, {}))
  assert.deepEqual(durability?.controlPlane, { kind: 'local', path: '/cp.sqlite' })
  assert.equal(durability?.repairIntervalMs, 5000)
  assert.equal(durability?.scrubIntervalMs, 24 * 3_600_000)
  assert.throws(() => storageNodeDurability(loadConfig(storageNodeConfigSchema, ['--data-dir', '/d', '--member-id', 'node-1'], {})), { name: 'ConfigError' })
  assert.throws(() => storageNodeDurability(loadConfig(storageNodeConfigSchema, argv.slice(0, 8), {})), { name: 'ConfigError' })
  assert.throws(() => loadConfig(storageNodeConfigSchema, [...argv, '--scrub-interval', 'weekly'], {}), { name: 'ConfigError' })
})
