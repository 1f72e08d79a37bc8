/**
 * The controller against a running `cairn dev` (real engine, storage nodes, NBD):
 * a snapshot taken through CSI of a volume the engine holds includes writes the
 * engine acknowledged but never flushed, and a volume restored from it holds exactly
 * those bytes. Real clients (qemu-io) write and read over NBD.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { credentials, type Client } from '@grpc/grpc-js'
import { runOk } from '../engine/nbd/testing.js'
import { CLI_MAIN, Dev, MiB } from '../e2e/harness.js'
import type { Wire } from './convert.js'
import { loadCsiServices } from './server.js'
import { MOUNT_SNW } from './test-support.js'

const READY_TIMEOUT_MS = 30_000

describe('CSI controller with cairn dev', () => {
  let dev: Dev
  let sockDir: string
  let stopCsi: (() => Promise<number | null>) | undefined
  let controller: Client

  const call = (method: string, req: Wire): Promise<Wire> =>
    new Promise((resolve, reject) => {
      const fn = (controller as unknown as Record<string, (r: Wire, cb: (e: Error | null, res: Wire) => void) => void>)[method]
      fn?.call(controller, req, (err, res) => (err ? reject(err) : resolve(res)))
    })

  before(async () => {
    dev = await Dev.start({ size: '64MiB', dataShards: 2, parityShards: 1 })
    sockDir = await mkdtemp(join(tmpdir(), 'cairn-csi-dev-'))
    const endpoint = `unix://${join(sockDir, 'csi.sock')}`
    const child = spawn(process.execPath, [CLI_MAIN, 'csi', '--mode', 'controller', '--endpoint', endpoint, '--data-dir', dev.dataDir, '--metrics-listen', '127.0.0.1:0', '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, KUBERNETES_SERVICE_HOST: '' },
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    stopCsi = async () => {
      child.kill('SIGTERM')
      return exited
    }
    controller = new (loadCsiServices().Controller)(endpoint, credentials.createInsecure())
    await new Promise<void>((resolve, reject) => controller.waitForReady(Date.now() + READY_TIMEOUT_MS, (err) => (err ? reject(err) : resolve())))
  })
  after(async () => {
    controller?.close()
    assert.equal(await stopCsi?.(), 0, 'cairn csi stops cleanly')
    await dev?.destroy()
    await rm(sockDir, { recursive: true, force: true })
  })

  it('a CSI snapshot of the engine-held volume includes unflushed acknowledged writes; a restore holds exactly them', async () => {
    const offset = 3 * MiB
    // No flush by the client: the snapshot itself must include every acknowledged write.
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x11 ${offset} ${2 * MiB}`, dev.uri])
    const snap = (await call('CreateSnapshot', { name: 'csi-before', source_volume_id: 'demo' })).snapshot as Wire
    assert.equal(snap.ready_to_use, true)
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x22 ${offset} ${MiB}`, '-c', 'flush', dev.uri])
    const restored = (await call('CreateVolume', {
      name: 'csi-restored',
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [MOUNT_SNW],
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
    })).volume as Wire
    assert.equal(restored.capacity_bytes, 64 * MiB)
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x11 ${offset} ${2 * MiB}`, dev.uriOf('csi-restored')])
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x22 ${offset} ${MiB}`, '-c', `read -P 0x11 ${offset + MiB} ${MiB}`, dev.uri])
  })

  it('expanding the engine-held volume through CSI grows the export new connections see, and keeps the data', async () => {
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x44 ${20 * MiB} ${MiB}`, '-c', 'flush', dev.uri])
    const grown = await call('ControllerExpandVolume', { volume_id: 'demo', capacity_range: { required_bytes: 96 * MiB }, volume_capability: MOUNT_SNW })
    assert.deepEqual(grown, { capacity_bytes: 96 * MiB, node_expansion_required: true })
    const info = JSON.parse(await runOk('nbdinfo', ['--json', dev.uri])) as { exports: Array<Record<string, unknown>> }
    assert.equal(info.exports[0]?.['export-size'], 96 * MiB)
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x44 ${20 * MiB} ${MiB}`, '-c', `write -P 0x55 ${90 * MiB} ${MiB}`, '-c', `read -P 0x55 ${90 * MiB} ${MiB}`, dev.uri])
  })

  it('a clone of the engine-held volume through CSI holds its latest acknowledged writes', async () => {
    const offset = 9 * MiB
    await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 ${offset} ${MiB}`, dev.uri])
    await call('CreateVolume', { name: 'csi-clone', volume_capabilities: [MOUNT_SNW], volume_content_source: { volume: { volume_id: 'demo' } } })
    await runOk('qemu-io', ['-f', 'raw', '-c', `read -P 0x33 ${offset} ${MiB}`, dev.uriOf('csi-clone')])
    const listed = (await call('ListVolumes', {})).entries as Wire[]
    const demo = listed.find((e) => (e.volume as Wire).volume_id === 'demo')
    assert.ok(demo !== undefined)
    assert.equal(((demo.status as Wire).published_node_ids as string[]).length, 1, 'the engine holding demo is its published node')
  })
})
