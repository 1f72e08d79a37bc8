import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { credentials, type Client } from '@grpc/grpc-js'
import { csiConfigSchema, loadConfig } from '../core/config.js'
import { silentLogger } from '../core/logger.js'
import { createLocalControlPlane } from '../control-plane/local/local-control-plane.js'
import { loadCsiServices } from '../csi-driver/server.js'
import { localNodeDirectory, localNodeRegistration } from '../cli/commands/csi.js'

const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const NODE_SERVICE = fileURLToPath(new URL('../csi-driver/node-service.js', import.meta.url))
const READY_TIMEOUT_MS = 20_000

interface Run {
  code: Promise<number | null>
  stderr: () => string
  kill: (signal: NodeJS.Signals) => void
}

function cairn(args: string[]): Run {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KUBERNETES_SERVICE_HOST: '' } })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  return { code: new Promise((resolve) => child.on('exit', (code) => resolve(code))), stderr: () => stderr, kill: (s) => child.kill(s) }
}

/** Calls `method` once the socket serves, waiting for the channel (not sleeping) up to a deadline. */
async function callWhenReady(Service: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client, endpoint: string, method: string): Promise<Record<string, unknown>> {
  const client = new Service(endpoint, credentials.createInsecure())
  try {
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + READY_TIMEOUT_MS, (err) => (err ? reject(err) : resolve())))
    return await new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, (r: object, cb: (e: Error | null, res: Record<string, unknown>) => void) => void>)[method]
      fn?.call(client, {}, (err, res) => (err ? reject(err) : resolve(res)))
    })
  } finally {
    client.close()
  }
}

describe('cairn csi', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-csi-cli-'))
    const cp = createLocalControlPlane({ path: join(dir, 'control-plane.sqlite') }, { logger: silentLogger() })
    await cp.start()
    await cp.stop()
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('serves identity and controller on the socket against the Local control plane of --data-dir, and stops cleanly on SIGTERM', async () => {
    const socket = join(dir, 'ctrl', 'csi.sock')
    const run = cairn(['csi', '--mode', 'controller', '--endpoint', `unix://${socket}`, '--data-dir', dir, '--metrics-listen', '127.0.0.1:0', '--log-level', 'warn'])
    try {
      const services = loadCsiServices()
      const info = await callWhenReady(services.Identity, `unix://${socket}`, 'GetPluginInfo')
      const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
      assert.deepEqual([info.name, info.vendor_version], ['csi.cairn.dev', pkg.version])
      const caps = await callWhenReady(services.Controller, `unix://${socket}`, 'ControllerGetCapabilities')
      assert.ok((caps.capabilities as unknown[]).length > 0)
    } finally {
      run.kill('SIGTERM')
    }
    assert.equal(await run.code, 0, run.stderr())
    assert.equal(existsSync(socket), false, 'the socket is removed on stop')
  })

  it('--mode node serves the node service when it is built, and otherwise refuses with ServiceNotAvailableError', async () => {
    const socket = join(dir, 'node', 'csi.sock')
    const run = cairn(['csi', '--mode', 'node', '--node-id', 'node-7', '--endpoint', `unix://${socket}`, '--data-dir', dir, '--metrics-listen', '127.0.0.1:0', '--log-level', 'warn'])
    if (!existsSync(NODE_SERVICE)) {
      assert.equal(await run.code, 1)
      assert.match(run.stderr(), /ServiceNotAvailableError/)
      return
    }
    try {
      const info = await callWhenReady(loadCsiServices().Node, `unix://${socket}`, 'NodeGetInfo')
      assert.equal(info.node_id, 'node-7')
    } finally {
      run.kill('SIGTERM')
    }
    assert.equal(await run.code, 0, run.stderr())
  })

  it('refuses to start without --mode, or without a control plane in --data-dir', async () => {
    const noMode = cairn(['csi', '--endpoint', `unix://${join(dir, 'x.sock')}`, '--data-dir', dir])
    assert.equal(await noMode.code, 2)
    const empty = await mkdtemp(join(tmpdir(), 'cairn-csi-empty-'))
    try {
      const run = cairn(['csi', '--mode', 'controller', '--endpoint', `unix://${join(empty, 'csi.sock')}`, '--data-dir', empty, '--metrics-listen', '127.0.0.1:0'])
      assert.equal(await run.code, 1)
      assert.match(run.stderr(), /NoLocalControlPlaneError/)
      assert.equal(existsSync(join(empty, 'control-plane.sqlite')), false, 'no empty control plane was created')
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })
})

describe('local node directory', () => {
  it('knows the nodes whose plugin registered under the data dir, and nothing else', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'cairn-csi-reg-'))
    try {
      const nodes = localNodeDirectory(dataDir)
      assert.equal(await nodes('n1'), false)
      await mkdir(localNodeRegistration(dataDir, 'n1'), { recursive: true })
      assert.equal(await nodes('n1'), true)
      assert.equal(await nodes('n2'), false)
      assert.equal(await nodes('..'), false)
      assert.equal(await nodes('a/../n1'), false)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('cairn csi configuration', () => {
  it('accepts the flags the Helm chart passes, with defaults for the rest', () => {
    const config = loadConfig(csiConfigSchema, ['--mode=node', '--endpoint=unix:///csi/csi.sock', '--node-id=worker-1', '--metrics-listen=0.0.0.0:9811'], {})
    assert.equal(config.mode, 'node')
    assert.equal(config.nodeId, 'worker-1')
    assert.equal(config.dataDir, '.cairn')
    assert.equal(config.defaultVolumeSize, '1GiB')
    assert.equal(config.controlPlane, undefined)
  })

  it('refuses a bad mode, a non-unix endpoint and a node id that is not a DNS-1123 name', () => {
    for (const argv of [['--mode=both'], ['--mode=node', '--endpoint=tcp://x:1'], ['--mode=node', '--node-id=Bad_Node']]) {
      assert.throws(() => loadConfig(csiConfigSchema, argv, {}), { name: 'ConfigError' }, argv.join(' '))
    }
  })
})
