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
