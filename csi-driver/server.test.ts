import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { status as Status } from '@grpc/grpc-js'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { createLocalControlPlane, type LocalControlPlane } from '../control-plane/local/local-control-plane.js'
import { CsiIdentityService } from './identity-service.js'
import { CSI_PROTO_PATH, CsiServer, REDACTED_FIELDS, socketPathOf, stripSecrets } from './server.js'
import { MOUNT_SNW, rejectsWith, startDriver, type DriverHarness } from './test-support.js'
import type * as T from './types.js'

const SECRET = 'hunter2-do-not-log'

/** A NodeService that records the typed requests it receives (a seam double: the real one is node-service.ts). */
class RecordingNode implements T.NodeService {
  readonly calls: Array<[string, unknown]> = []
  async nodeStageVolume(req: T.NodeStageVolumeRequest) {
    this.calls.push(['stage', req])
  }
  async nodeUnstageVolume(req: T.NodeUnstageVolumeRequest) {
    this.calls.push(['unstage', req])
  }
  async nodePublishVolume(req: T.NodePublishVolumeRequest) {
    this.calls.push(['publish', req])
  }
  async nodeUnpublishVolume(req: T.NodeUnpublishVolumeRequest) {
    this.calls.push(['unpublish', req])
  }
  async nodeGetVolumeStats(): Promise<T.NodeGetVolumeStatsResponse> {
    return { usage: [{ unit: 'BYTES', available: 10, total: 30, used: 20 }], volumeCondition: { abnormal: false, message: 'ok' } }
  }
  async nodeExpandVolume(req: T.NodeExpandVolumeRequest) {
    return { capacityBytes: req.capacityRange?.requiredBytes ?? 0 }
  }
  async nodeGetCapabilities(): Promise<T.NodeCapability[]> {
    return ['STAGE_UNSTAGE_VOLUME', 'EXPAND_VOLUME']
  }
  async nodeGetInfo(): Promise<T.NodeInfo> {
    return { nodeId: 'node-1', maxVolumesPerNode: 7, accessibleTopology: { segments: { 'topology.cairn.dev/node': 'node-1' } } }
  }
}

describe('CSI server', () => {
  let dir: string
  let cp: LocalControlPlane
  let d: DriverHarness
  const lines: string[] = []
  const node = new RecordingNode()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-csi-server-'))
    cp = createLocalControlPlane({ path: join(dir, 'cp.sqlite') }, { logger: silentLogger() })
    await cp.start()
    await cp.createBlockStore({ name: 'bs', hostPath: '/x' })
    await cp.createStoragePolicy({ name: 'pol', dataShards: 1, parityShards: 0 })
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString())
        done()
      },
    })
    d = await startDriver(cp, { logger: pino({ level: 'trace' }, sink), node })
  })
  after(async () => {
    await d.stop()
    await cp.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('never logs secrets or mount flags, on success or on error, while logging the calls themselves', async () => {
    const secrets = { password: SECRET }
    const cap = { mount: { fs_type: 'ext4', mount_flags: [`pass=${SECRET}`] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }
    const vol = (await d.controller('CreateVolume', { name: 'sec-1', volume_capabilities: [cap], secrets })).volume as Record<string, unknown>
    await rejectsWith(d.controller('CreateVolume', { name: '', volume_capabilities: [cap], secrets }), Status.INVALID_ARGUMENT)
    await d.controller('ControllerPublishVolume', { volume_id: vol.volume_id, node_id: 'n1', volume_capability: cap, secrets })
    await d.controller('ControllerUnpublishVolume', { volume_id: vol.volume_id, node_id: 'n1', secrets })
    await d.controller('CreateSnapshot', { name: 'sec-snap', source_volume_id: vol.volume_id, secrets })
    await d.controller('ListSnapshots', { secrets })
    await d.controller('ControllerExpandVolume', { volume_id: vol.volume_id, capacity_range: { required_bytes: 2 ** 30 * 2 }, secrets })
    await d.node('NodeStageVolume', { volume_id: vol.volume_id, staging_target_path: '/s', volume_capability: cap, secrets })
    await d.node('NodePublishVolume', { volume_id: vol.volume_id, target_path: '/t', volume_capability: cap, secrets })
    await d.controller('DeleteSnapshot', { snapshot_id: 'sec-snap', secrets })
    await d.controller('DeleteVolume', { volume_id: vol.volume_id, secrets })
    const log = lines.join('')
    assert.ok(log.includes('"method":"CreateVolume"') && log.includes('"method":"NodeStageVolume"'), 'requests are logged')
    assert.ok(log.includes('***stripped***'), 'secret fields are logged as stripped')
    assert.ok(!log.includes(SECRET), 'no secret value reaches the log')
  })

  it('every field the proto marks csi_secret is stripped by name', async () => {
    const proto = await readFile(CSI_PROTO_PATH, 'utf8')
    const secretFields = [...proto.matchAll(/^\s*[\w<>, .]+\s(\w+)\s*=\s*\d+\s*\[\(csi_secret\) = true\];/gm)].map((m) => m[1])
    assert.ok(secretFields.length >= 10, `found ${secretFields.length} secret fields`)
    for (const f of secretFields) assert.ok(REDACTED_FIELDS.has(f as string), `${f} is not stripped`)
    assert.deepEqual(stripSecrets({ a: [{ secrets: { k: 'v' } }], b: 1 }), { a: [{ secrets: '***stripped***' }], b: 1 })
  })

  it('hands the node service typed requests and converts its answers', async () => {
    await d.node('NodeStageVolume', { volume_id: 'v', publish_context: { 'cairn.dev/epoch': '3' }, staging_target_path: '/stage', volume_capability: MOUNT_SNW, volume_context: { a: 'b' } })
    const stage = node.calls.find(([k, r]) => k === 'stage' && (r as T.NodeStageVolumeRequest).volumeId === 'v')?.[1] as T.NodeStageVolumeRequest
    assert.deepEqual(stage, {
      volumeId: 'v',
      publishContext: { 'cairn.dev/epoch': '3' },
      stagingTargetPath: '/stage',
      volumeCapability: { accessType: { kind: 'mount', fsType: 'ext4', mountFlags: [], volumeMountGroup: '' }, accessMode: 'SINGLE_NODE_WRITER' },
      secrets: {},
      volumeContext: { a: 'b' },
    })
    const info = await d.node('NodeGetInfo')
    assert.deepEqual(info, { node_id: 'node-1', max_volumes_per_node: 7, accessible_topology: { segments: { 'topology.cairn.dev/node': 'node-1' } } })
    const stats = await d.node('NodeGetVolumeStats', { volume_id: 'v', volume_path: '/t' })
    assert.deepEqual(stats.usage, [{ unit: 'BYTES', available: 10, total: 30, used: 20 }])
    assert.deepEqual(await d.node('NodeExpandVolume', { volume_id: 'v', capacity_range: { required_bytes: 8192 } }), { capacity_bytes: 8192 })
    const caps = (await d.node('NodeGetCapabilities')).capabilities as Array<{ rpc: { type: string } }>
    assert.deepEqual(caps.map((c) => c.rpc.type), ['STAGE_UNSTAGE_VOLUME', 'EXPAND_VOLUME'])
  })

  it('answers an RPC Cairn does not offer with UNIMPLEMENTED', async () => {
    await rejectsWith(d.controller('ControllerModifyVolume', { volume_id: 'v' }), Status.UNIMPLEMENTED)
  })
})

describe('CSI controller node directory', () => {
  it('publishing to a node the directory does not know is NOT_FOUND; a known node gets the volume', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-csi-nodes-'))
    const cp = createLocalControlPlane({ path: join(dir, 'cp.sqlite') }, { logger: silentLogger() })
    await cp.start()
    await cp.createBlockStore({ name: 'bs', hostPath: '/x' })
    await cp.createStoragePolicy({ name: 'pol', dataShards: 1, parityShards: 0 })
    const d = await startDriver(cp, { nodes: async (id) => id === 'known-node' })
    try {
      const vol = (await d.controller('CreateVolume', { name: 'nd-1', volume_capabilities: [MOUNT_SNW] })).volume as Record<string, unknown>
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: vol.volume_id, node_id: 'some-fake-node-id', volume_capability: MOUNT_SNW }), Status.NOT_FOUND)
      assert.equal((await cp.getVolume('nd-1')).status.attachment, null)
      await d.controller('ControllerPublishVolume', { volume_id: vol.volume_id, node_id: 'known-node', volume_capability: MOUNT_SNW })
      assert.equal((await cp.getVolume('nd-1')).status.attachment?.nodeId, 'known-node')
    } finally {
      await d.stop()
      await cp.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('CSI server endpoint', () => {
  it('accepts only unix endpoints', () => {
    assert.equal(socketPathOf('unix:///csi/csi.sock'), '/csi/csi.sock')
    assert.throws(() => socketPathOf('tcp://127.0.0.1:10000'), { name: 'InvalidArgumentError' })
    assert.throws(() => socketPathOf('/csi/csi.sock'), { name: 'InvalidArgumentError' })
  })

  it('refuses to replace a file that is not a socket, and removes its socket on stop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-csi-ep-'))
    try {
      const identity = new CsiIdentityService({ version: '0', controller: false }, { readiness: async () => undefined, logger: silentLogger() })
      const path = join(dir, 'csi.sock')
      await writeFile(path, 'precious')
      const blocked = new CsiServer({ endpoint: `unix://${path}` }, { logger: silentLogger(), registry: new Registry(), identity })
      await assert.rejects(blocked.start(), { name: 'InvalidArgumentError' })
      assert.equal(await readFile(path, 'utf8'), 'precious')
      await rm(path)
      const server = new CsiServer({ endpoint: `unix://${path}` }, { logger: silentLogger(), registry: new Registry(), identity })
      await server.start()
      await server.stop()
      // A socket left by a killed process is replaced on start.
      const again = new CsiServer({ endpoint: `unix://${path}` }, { logger: silentLogger(), registry: new Registry(), identity })
      await again.start()
      const stale = new CsiServer({ endpoint: `unix://${path}` }, { logger: silentLogger(), registry: new Registry(), identity })
      await stale.start()
      await stale.stop()
      await again.stop()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('CSI identity', () => {
  it('Probe says not ready (and does not fail) when the control plane stops answering', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-csi-probe-'))
    const cp = createLocalControlPlane({ path: join(dir, 'cp.sqlite') }, { logger: silentLogger() })
    await cp.start()
    const d = await startDriver(cp)
    try {
      assert.deepEqual((await d.identity('Probe')).ready, { value: true })
      await cp.stop()
      assert.deepEqual((await d.identity('Probe')).ready, { value: false })
    } finally {
      await d.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
