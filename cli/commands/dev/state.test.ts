import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../../core/free-port.js'
import { devPaths, nodePorts } from './state.js'

test('a ports.json from before the mesh keeps its gRPC and metrics ports and gains a mesh port, persisted', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'cairn-dev-ports-'))
  try {
    const old = { grpcPort: await freePort('127.0.0.1'), metricsPort: await freePort('127.0.0.1') }
    await mkdir(devPaths(dataDir).node(0), { recursive: true })
    await writeFile(devPaths(dataDir).nodePorts(0), JSON.stringify(old))
    const ports = await nodePorts(dataDir, 0, '127.0.0.1', new Set())
    assert.equal(ports.grpcPort, old.grpcPort)
    assert.equal(ports.metricsPort, old.metricsPort)
    assert.ok(ports.meshPort !== old.grpcPort && ports.meshPort !== old.metricsPort)
    assert.deepEqual(JSON.parse(await readFile(devPaths(dataDir).nodePorts(0), 'utf8')), ports)
    assert.deepEqual(await nodePorts(dataDir, 0, '127.0.0.1', new Set()), ports, 'the next run reuses all three')
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
})
