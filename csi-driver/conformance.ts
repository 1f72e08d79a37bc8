/**
 * The CSI controller and identity conformance suite, over a real gRPC Unix socket.
 * Every control plane runs it unchanged:
 *
 * ```ts
 * csiConformance('local', async () => ({ cp, cleanup, expireContinueTokens }))
 * ```
 *
 * One driver serves the whole suite; each case uses names of its own, so the cases
 * do not depend on each other's leftovers.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { status as Status } from '@grpc/grpc-js'
import type { ControlPlane } from '../control-plane/types.js'
import type { Wire } from './convert.js'
import { EngineUnavailableError } from './errors.js'
import { volumeKey } from './locks.js'
import { BLOCK_SNW, MOUNT_SNW, mountCap, rejectsWith, startDriver, type DriverHarness } from './test-support.js'

export interface CsiConformanceHarness {
  /** A started control plane over empty storage. */
  cp: ControlPlane
  cleanup(): Promise<void>
  /** Makes every continue token issued so far stale. Absent: the stale-token case is skipped. */
  expireContinueTokens?(): Promise<void>
}

const MiB = 1024 * 1024
const GiB = 1024 * MiB

function entriesOf(res: Wire): Wire[] {
  return res.entries as Wire[]
}

/** Registers the suite under `describe(name)`. `subset` runs only the cases marked representative. */
export function csiConformance(name: string, factory: () => Promise<CsiConformanceHarness>, options: { subset?: boolean } = {}): void {
  describe(`CSI controller conformance: ${name}`, () => {
    let h: CsiConformanceHarness
    let d: DriverHarness
    let seq = 0
    const unique = (prefix: string) => `${prefix}-${++seq}`
    const create = async (volName: string, extra: Wire = {}): Promise<Wire> =>
      (await d.controller('CreateVolume', { name: volName, capacity_range: { required_bytes: 4 * MiB }, volume_capabilities: [MOUNT_SNW], ...extra })).volume as Wire
    const full = options.subset === true ? it.skip : it

    before(async () => {
      h = await factory()
      await h.cp.createBlockStore({ name: 'bs', hostPath: '/var/lib/cairn' })
      await h.cp.createStoragePolicy({ name: 'pol', dataShards: 2, parityShards: 1 })
      await h.cp.publishClusterMap('bs', {
        epoch: 1,
        members: ['a', 'b', 'c'].map((id, i) => ({ id, address: `10.0.0.${i + 1}:7700`, peerId: `peer-${id}`, failureDomain: id, weight: 100, state: 'active' as const })),
      })
      d = await startDriver(h.cp)
    })
    after(async () => {
      await d?.stop()
      await h?.cleanup()
    })

    it('identity: GetPluginInfo names csi.cairn.dev with the package version', async () => {
      const info = await d.identity('GetPluginInfo')
      assert.equal(info.name, 'csi.cairn.dev')
      assert.equal(info.vendor_version, '0.1.0')
    })

    it('identity: GetPluginCapabilities offers the controller, topology and online expansion', async () => {
      const caps = (await d.identity('GetPluginCapabilities')).capabilities as Wire[]
      const services = caps.map((c) => (c.service as Wire | null)?.type).filter(Boolean)
      assert.deepEqual(services.sort(), ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS'])
      assert.ok(caps.some((c) => (c.volume_expansion as Wire | null)?.type === 'ONLINE'))
    })

    it('identity: Probe is ready while the control plane answers', async () => {
      assert.deepEqual((await d.identity('Probe')).ready, { value: true })
    })

    it('ControllerGetCapabilities lists every RPC the controller implements', async () => {
      const caps = ((await d.controller('ControllerGetCapabilities')).capabilities as Wire[]).map((c) => (c.rpc as Wire).type)
      for (const cap of ['CREATE_DELETE_VOLUME', 'PUBLISH_UNPUBLISH_VOLUME', 'LIST_VOLUMES', 'GET_CAPACITY', 'CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME', 'EXPAND_VOLUME', 'GET_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER']) {
        assert.ok(caps.includes(cap), `missing ${cap}`)
      }
    })

    it('CreateVolume refuses missing and invalid arguments with INVALID_ARGUMENT', async () => {
      const ok = { name: unique('bad'), capacity_range: { required_bytes: MiB }, volume_capabilities: [MOUNT_SNW] }
      const cases: Array<[string, Wire]> = [
        ['no name', { ...ok, name: '' }],
        ['no capabilities', { ...ok, volume_capabilities: [] }],
        ['no access type', { ...ok, volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }],
        ['no access mode', { ...ok, volume_capabilities: [{ mount: {} }] }],
        ['multi-node writer', { ...ok, volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')] }],
        ['multi-node single writer', { ...ok, volume_capabilities: [mountCap('MULTI_NODE_SINGLE_WRITER')] }],
        ['multi-node reader without a snapshot source', { ...ok, volume_capabilities: [mountCap('MULTI_NODE_READER_ONLY')] }],
        ['unsupported fs', { ...ok, volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'btrfs')] }],
        ['unknown parameter', { ...ok, parameters: { replicas: '3' } }],
        ['bad policy name', { ...ok, parameters: { storagePolicy: 'Not A Name' } }],
        ['required above limit', { ...ok, capacity_range: { required_bytes: 2 * MiB, limit_bytes: MiB } }],
        ['negative capacity', { ...ok, capacity_range: { required_bytes: -1 } }],
        ['snapshot source without id', { ...ok, volume_content_source: { snapshot: { snapshot_id: '' } } }],
        ['name with a control character', { ...ok, name: 'a\u0001b' }],
      ]
      for (const [why, req] of cases) await rejectsWith(d.controller('CreateVolume', req), Status.INVALID_ARGUMENT, why)
      assert.equal(await h.cp.getVolume(ok.name).catch((e: Error) => e.name), 'NotFoundError', 'nothing was created')
    })

    it('CreateVolume rounds the size up to 4096 bytes and honours the limit', async () => {
      const v = await create(unique('round'), { capacity_range: { required_bytes: 10_000 } })
      assert.equal(v.capacity_bytes, 12_288)
      const limited = await create(unique('limit'), { capacity_range: { limit_bytes: 3 * 4096 + 100 } })
      assert.equal(limited.capacity_bytes, 3 * 4096)
      await rejectsWith(d.controller('CreateVolume', { name: unique('oor'), capacity_range: { required_bytes: 5000, limit_bytes: 6000 }, volume_capabilities: [MOUNT_SNW] }), Status.OUT_OF_RANGE)
      await rejectsWith(d.controller('CreateVolume', { name: unique('oor'), capacity_range: { limit_bytes: 100 }, volume_capabilities: [MOUNT_SNW] }), Status.OUT_OF_RANGE)
    })

    it('CreateVolume is idempotent by name; another capacity under the same name is ALREADY_EXISTS', async () => {
      const volName = unique('idem')
      const first = await create(volName)
      const again = await create(volName)
      assert.deepEqual(again, first)
      await rejectsWith(create(volName, { capacity_range: { required_bytes: 8 * MiB } }), Status.ALREADY_EXISTS)
      // A range the existing volume satisfies is compatible.
      assert.equal((await create(volName, { capacity_range: { required_bytes: MiB, limit_bytes: 4 * MiB } })).volume_id, first.volume_id)
      await rejectsWith(create(volName, { parameters: { storagePolicy: 'other' } }), Status.ALREADY_EXISTS)
    })

    it('CreateVolume maps a name that is not an object name to a stable id', async () => {
      const volName = `PVC Name/${unique('x')}`
      const first = await create(volName)
      assert.match(String(first.volume_id), /^vol-[0-9a-f]{40}$/)
      assert.equal((await create(volName)).volume_id, first.volume_id)
    })

    it('CreateVolume reports the volume with its context, and names an unknown block store NOT_FOUND', async () => {
      const v = await create(unique('ctx'), { parameters: { blockStore: 'bs', storagePolicy: 'pol' } })
      assert.deepEqual(v.volume_context, { 'cairn.dev/block-store': 'bs', 'cairn.dev/storage-policy': 'pol' })
      await rejectsWith(create(unique('nostore'), { parameters: { blockStore: 'missing' } }), Status.NOT_FOUND)
    })

    it('CreateVolume from a snapshot restores it; a smaller size is OUT_OF_RANGE; an unknown snapshot NOT_FOUND', async () => {
      const src = await create(unique('src'))
      const snap = (await d.controller('CreateSnapshot', { name: unique('snap'), source_volume_id: src.volume_id })).snapshot as Wire
      const restored = await create(unique('restored'), {
        volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
        volume_capabilities: [mountCap('MULTI_NODE_READER_ONLY'), MOUNT_SNW],
      })
      assert.deepEqual((restored.content_source as Wire).snapshot, { snapshot_id: snap.snapshot_id })
      assert.deepEqual((await h.cp.getVolume(String(restored.volume_id))).source, { snapshot: snap.snapshot_id })
      await rejectsWith(create(unique('small'), { capacity_range: { required_bytes: MiB }, volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } }), Status.OUT_OF_RANGE)
      await rejectsWith(create(unique('nosnap'), { volume_content_source: { snapshot: { snapshot_id: 'missing-snap' } } }), Status.NOT_FOUND)
    })

    it('CreateVolume from a volume clones it; an unknown source volume is NOT_FOUND', async () => {
      const src = await create(unique('clsrc'))
      const clone = await create(unique('clone'), { capacity_range: { required_bytes: 8 * MiB }, volume_content_source: { volume: { volume_id: src.volume_id } } })
      assert.equal(clone.capacity_bytes, 8 * MiB)
      assert.deepEqual((await h.cp.getVolume(String(clone.volume_id))).source, { volume: src.volume_id })
      await rejectsWith(create(unique('noclone'), { volume_content_source: { volume: { volume_id: 'missing-vol' } } }), Status.NOT_FOUND)
    })

    it('DeleteVolume: missing id INVALID_ARGUMENT, unknown id and repeats succeed, a published volume FAILED_PRECONDITION', async () => {
      await rejectsWith(d.controller('DeleteVolume', { volume_id: '' }), Status.INVALID_ARGUMENT)
      await d.controller('DeleteVolume', { volume_id: 'never-existed' })
      await d.controller('DeleteVolume', { volume_id: 'Not An Id!' })
      const v = await create(unique('del'))
      await d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: 'node-a', volume_capability: MOUNT_SNW })
      await rejectsWith(d.controller('DeleteVolume', { volume_id: v.volume_id }), Status.FAILED_PRECONDITION)
      await d.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: 'node-a' })
      await d.controller('DeleteVolume', { volume_id: v.volume_id })
      await d.controller('DeleteVolume', { volume_id: v.volume_id })
      assert.equal(await h.cp.getVolume(String(v.volume_id)).catch((e: Error) => e.name), 'NotFoundError')
    })

    it('ControllerPublishVolume records the attachment with a new epoch; repeats are idempotent; another node is FAILED_PRECONDITION', async () => {
      const v = await create(unique('pub'))
      const req = { volume_id: v.volume_id, node_id: 'node-a', volume_capability: MOUNT_SNW }
      const first = (await d.controller('ControllerPublishVolume', req)).publish_context as Record<string, string>
      assert.equal(first['cairn.dev/node-id'], 'node-a')
      const stored = await h.cp.getVolume(String(v.volume_id))
      assert.equal(stored.status.attachment?.nodeId, 'node-a')
      assert.equal(String(stored.status.attachment?.epoch), first['cairn.dev/epoch'])
      assert.deepEqual((await d.controller('ControllerPublishVolume', req)).publish_context, first)
      await rejectsWith(d.controller('ControllerPublishVolume', { ...req, node_id: 'node-b' }), Status.FAILED_PRECONDITION)
      await d.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: 'node-a' })
      await d.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: 'node-a' })
      const unpublished = await h.cp.getVolume(String(v.volume_id))
      assert.equal(unpublished.status.attachment, null)
      // No engine detached cleanly (none ran), so the head may lag a journal: the next reader must recover it.
      assert.equal(unpublished.status.recoveryPending, true)
      const second = (await d.controller('ControllerPublishVolume', { ...req, node_id: 'node-b' })).publish_context as Record<string, string>
      assert.ok(Number(second['cairn.dev/epoch']) > Number(first['cairn.dev/epoch']), 'a new publish takes a larger epoch')
      // Unpublishing from a node that does not hold it leaves the holder alone.
      await d.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: 'node-a' })
      assert.equal((await h.cp.getVolume(String(v.volume_id))).status.attachment?.nodeId, 'node-b')
    })

    full('ControllerPublish/Unpublish validate arguments; unknown volumes are NOT_FOUND to publish and already unpublished; unpublish without a node releases any holder', async () => {
      const v = await create(unique('pubarg'))
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: '', node_id: 'n', volume_capability: MOUNT_SNW }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: '', volume_capability: MOUNT_SNW }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: 'n' }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: 'n', volume_capability: mountCap('MULTI_NODE_MULTI_WRITER') }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: 'missing-vol', node_id: 'n', volume_capability: MOUNT_SNW }), Status.NOT_FOUND)
      await rejectsWith(d.controller('ControllerUnpublishVolume', { volume_id: '', node_id: 'n' }), Status.INVALID_ARGUMENT)
      await d.controller('ControllerUnpublishVolume', { volume_id: 'missing-vol', node_id: 'n' })
      // node_id is optional on unpublish: without it the volume is unpublished from whichever node holds it.
      await d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: 'n', volume_capability: MOUNT_SNW })
      await d.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: '' })
      assert.equal((await h.cp.getVolume(String(v.volume_id))).status.attachment, null)
    })

    full('MULTI_NODE_READER_ONLY publishes a restored volume read-only on several nodes without taking an epoch', async () => {
      const src = await create(unique('mnsrc'))
      const snap = (await d.controller('CreateSnapshot', { name: unique('mnsnap'), source_volume_id: src.volume_id })).snapshot as Wire
      const v = await create(unique('mnro'), { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } }, volume_capabilities: [mountCap('MULTI_NODE_READER_ONLY')] })
      const cap = mountCap('MULTI_NODE_READER_ONLY')
      for (const node of ['r1', 'r2']) {
        const ctx = (await d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: node, volume_capability: cap, readonly: true })).publish_context
        assert.deepEqual(ctx, { 'cairn.dev/read-only': 'true' })
      }
      assert.equal((await h.cp.getVolume(String(v.volume_id))).status.epoch, 0)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: 'r3', volume_capability: cap, readonly: false }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: src.volume_id, node_id: 'r3', volume_capability: cap, readonly: true }), Status.INVALID_ARGUMENT)
    })

    full('read-only publishes are recorded: listed as published nodes, exclusive with a writer, block delete, undone by unpublish', async () => {
      const src = await create(unique('rdsrc'))
      const snap = (await d.controller('CreateSnapshot', { name: unique('rdsnap'), source_volume_id: src.volume_id })).snapshot as Wire
      const v = await create(unique('rdro'), { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } }, volume_capabilities: [mountCap('MULTI_NODE_READER_ONLY')] })
      const id = String(v.volume_id)
      const ro = { volume_id: id, volume_capability: mountCap('MULTI_NODE_READER_ONLY'), readonly: true }
      const published = async () => ((await d.controller('ControllerGetVolume', { volume_id: id })).status as Wire).published_node_ids as string[]
      const listed = async () => {
        const entry = entriesOf(await d.controller('ListVolumes', {})).find((e) => (e.volume as Wire).volume_id === id)
        return (entry?.status as Wire | undefined)?.published_node_ids as string[] | undefined
      }
      for (const node of ['r2', 'r1', 'r2']) await d.controller('ControllerPublishVolume', { ...ro, node_id: node })
      assert.deepEqual((await h.cp.getVolume(id)).status.readers, ['r1', 'r2'], 'a repeated publish records the reader once')
      assert.deepEqual([...(await published())].sort(), ['r1', 'r2'])
      assert.deepEqual([...((await listed()) ?? [])].sort(), ['r1', 'r2'])
      // A writer while readers hold it: elsewhere FAILED_PRECONDITION; on a reader's own node the publish is incompatible, ALREADY_EXISTS.
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'w1', volume_capability: MOUNT_SNW }), Status.FAILED_PRECONDITION)
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'r1', volume_capability: MOUNT_SNW }), Status.ALREADY_EXISTS)
      await rejectsWith(d.controller('DeleteVolume', { volume_id: id }), Status.FAILED_PRECONDITION)
      assert.equal((await h.cp.getVolume(id)).status.attachment, null, 'a refused writer took nothing')
      await d.controller('ControllerUnpublishVolume', { volume_id: id, node_id: 'r1' })
      await d.controller('ControllerUnpublishVolume', { volume_id: id, node_id: 'r1' })
      assert.deepEqual(await published(), ['r2'])
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'w1', volume_capability: MOUNT_SNW }), Status.FAILED_PRECONDITION)
      // Without a node id, unpublish means every node.
      await d.controller('ControllerPublishVolume', { ...ro, node_id: 'r3' })
      await d.controller('ControllerUnpublishVolume', { volume_id: id, node_id: '' })
      assert.deepEqual(await published(), [])
      // Now a writer may take it, and a reader is refused while it holds it: elsewhere FAILED_PRECONDITION, on its node ALREADY_EXISTS.
      await d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'w1', volume_capability: MOUNT_SNW })
      assert.deepEqual(await published(), ['w1'])
      await rejectsWith(d.controller('ControllerPublishVolume', { ...ro, node_id: 'r1' }), Status.FAILED_PRECONDITION)
      await rejectsWith(d.controller('ControllerPublishVolume', { ...ro, node_id: 'w1' }), Status.ALREADY_EXISTS)
      assert.deepEqual((await h.cp.getVolume(id)).status.readers, [])
      // The writer's node again: the same capability is the same publish; another one, or another readonly flag, is ALREADY_EXISTS.
      const again = await d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'w1', volume_capability: MOUNT_SNW })
      assert.equal((await h.cp.getVolume(id)).status.attachment?.epoch, Number((again.publish_context as Record<string, string>)['cairn.dev/epoch']))
      await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'w1', volume_capability: MOUNT_SNW, readonly: true }), Status.ALREADY_EXISTS)
      await rejectsWith(
        d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'w1', volume_capability: mountCap('SINGLE_NODE_MULTI_WRITER') }),
        Status.ALREADY_EXISTS,
      )
      await d.controller('ControllerUnpublishVolume', { volume_id: id, node_id: 'w1' })
      await d.controller('DeleteVolume', { volume_id: id })
      await rejectsWith(d.controller('ControllerGetVolume', { volume_id: id }), Status.NOT_FOUND)
    })

    it('ValidateVolumeCapabilities confirms supported capabilities and explains unsupported ones', async () => {
      const v = await create(unique('val'))
      await rejectsWith(d.controller('ValidateVolumeCapabilities', { volume_id: '', volume_capabilities: [MOUNT_SNW] }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ValidateVolumeCapabilities', { volume_id: v.volume_id, volume_capabilities: [] }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ValidateVolumeCapabilities', { volume_id: 'missing-vol', volume_capabilities: [MOUNT_SNW] }), Status.NOT_FOUND)
      const ok = await d.controller('ValidateVolumeCapabilities', { volume_id: v.volume_id, volume_capabilities: [MOUNT_SNW, BLOCK_SNW, mountCap('SINGLE_NODE_MULTI_WRITER', 'xfs')] })
      assert.equal(((ok.confirmed as Wire).volume_capabilities as Wire[]).length, 3)
      const no = await d.controller('ValidateVolumeCapabilities', { volume_id: v.volume_id, volume_capabilities: [mountCap('MULTI_NODE_READER_ONLY')] })
      assert.equal(no.confirmed, null)
      assert.notEqual(no.message, '')
    })

    it('ListVolumes pages with max_entries and next_token, each volume exactly once, with its published node', async () => {
      const mine = await Promise.all([0, 1, 2, 3, 4].map(() => create(unique('page'))))
      await d.controller('ControllerPublishVolume', { volume_id: mine[0]?.volume_id, node_id: 'node-l', volume_capability: MOUNT_SNW })
      const seen = new Map<string, Wire>()
      let token = ''
      for (let pages = 0; pages < 1000; pages++) {
        const res = await d.controller('ListVolumes', { max_entries: 2, starting_token: token })
        assert.ok(entriesOf(res).length <= 2)
        for (const e of entriesOf(res)) {
          const id = String((e.volume as Wire).volume_id)
          assert.ok(!seen.has(id), `${id} listed twice`)
          seen.set(id, e)
        }
        token = String(res.next_token)
        if (token === '') break
      }
      for (const v of mine) assert.ok(seen.has(String(v.volume_id)), `${v.volume_id} missing`)
      assert.deepEqual((seen.get(String(mine[0]?.volume_id))?.status as Wire).published_node_ids, ['node-l'])
      await d.controller('ControllerUnpublishVolume', { volume_id: mine[0]?.volume_id, node_id: 'node-l' })
    })

    it('ListVolumes and ListSnapshots answer a malformed starting_token with ABORTED and a negative max_entries with INVALID_ARGUMENT', async () => {
      await rejectsWith(d.controller('ListVolumes', { starting_token: 'not-a-token' }), Status.ABORTED)
      await rejectsWith(d.controller('ListSnapshots', { starting_token: 'bm90LWEtdG9rZW4' }), Status.ABORTED)
      await rejectsWith(d.controller('ListVolumes', { max_entries: -1 }), Status.INVALID_ARGUMENT)
      // A token of one list is no token for another.
      await create(unique('tok'))
      await create(unique('tok'))
      const volumesToken = String((await d.controller('ListVolumes', { max_entries: 1 })).next_token)
      assert.notEqual(volumesToken, '')
      await rejectsWith(d.controller('ListSnapshots', { starting_token: volumesToken }), Status.ABORTED)
    })

    it('ListVolumes answers a stale starting_token with ABORTED', async (t) => {
      if (h.expireContinueTokens === undefined) return t.skip('this control plane cannot expire tokens')
      await create(unique('stale'))
      await create(unique('stale'))
      const token = String((await d.controller('ListVolumes', { max_entries: 1 })).next_token)
      assert.notEqual(token, '')
      await h.expireContinueTokens()
      await rejectsWith(d.controller('ListVolumes', { max_entries: 1, starting_token: token }), Status.ABORTED)
    })

    it('ControllerGetVolume reports the volume, its node and its condition; unknown ids are NOT_FOUND', async () => {
      const v = await create(unique('get'))
      await rejectsWith(d.controller('ControllerGetVolume', { volume_id: '' }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerGetVolume', { volume_id: 'missing-vol' }), Status.NOT_FOUND)
      const stored = await h.cp.getVolume(String(v.volume_id))
      await h.cp.updateVolumeStatus(stored.name, stored.revision, { health: 'degraded' })
      const got = await d.controller('ControllerGetVolume', { volume_id: v.volume_id })
      assert.equal((got.volume as Wire).capacity_bytes, 4 * MiB)
      assert.equal(((got.status as Wire).volume_condition as Wire).abnormal, true)
    })

    it('GetCapacity reports k/(k+m) of the active members weighted capacity; unknown stores have none', async () => {
      const res = await d.controller('GetCapacity', { parameters: { blockStore: 'bs', storagePolicy: 'pol' } })
      assert.equal(res.available_capacity, Math.floor((300 * GiB * 2) / 3))
      assert.equal((res.minimum_volume_size as Wire).value, 4096)
      assert.equal((await d.controller('GetCapacity', { parameters: { blockStore: 'nope' } })).available_capacity, 0)
      assert.equal((await d.controller('GetCapacity', { accessible_topology: { segments: { 'topology.cairn.dev/block-store': 'other' } } })).available_capacity, 0)
      await rejectsWith(d.controller('GetCapacity', { parameters: { size: '1' } }), Status.INVALID_ARGUMENT)
    })

    it('CreateSnapshot validates, is idempotent by name, ALREADY_EXISTS for another source, NOT_FOUND for an unknown source', async () => {
      const a = await create(unique('sa'))
      const b = await create(unique('sb'))
      const snapName = unique('s')
      await rejectsWith(d.controller('CreateSnapshot', { name: '', source_volume_id: a.volume_id }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('CreateSnapshot', { name: snapName, source_volume_id: '' }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('CreateSnapshot', { name: snapName, source_volume_id: a.volume_id, parameters: { x: 'y' } }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('CreateSnapshot', { name: snapName, source_volume_id: 'missing-vol' }), Status.NOT_FOUND)
      const first = (await d.controller('CreateSnapshot', { name: snapName, source_volume_id: a.volume_id })).snapshot as Wire
      assert.equal(first.ready_to_use, true)
      assert.equal(first.source_volume_id, a.volume_id)
      assert.equal(first.size_bytes, 4 * MiB)
      assert.ok(Number((first.creation_time as Wire).seconds) > 0)
      assert.deepEqual((await d.controller('CreateSnapshot', { name: snapName, source_volume_id: a.volume_id })).snapshot, first)
      await rejectsWith(d.controller('CreateSnapshot', { name: snapName, source_volume_id: b.volume_id }), Status.ALREADY_EXISTS)
    })

    it('CreateSnapshot of a published volume first folds its engine\'s acknowledged writes into the head', async () => {
      const v = await create(unique('att'))
      await d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: 'node-s', volume_capability: MOUNT_SNW })
      await d.controller('CreateSnapshot', { name: unique('atts'), source_volume_id: v.volume_id })
      assert.deepEqual(d.engines.checkpoints, [v.volume_id])
      d.engines.failWith = new EngineUnavailableError('engine unreachable in this test')
      try {
        await rejectsWith(d.controller('CreateSnapshot', { name: unique('atts'), source_volume_id: v.volume_id }), Status.UNAVAILABLE)
        await rejectsWith(create(unique('attc'), { volume_content_source: { volume: { volume_id: v.volume_id } } }), Status.UNAVAILABLE)
      } finally {
        d.engines.failWith = undefined
      }
      await d.controller('ControllerUnpublishVolume', { volume_id: v.volume_id, node_id: 'node-s' })
    })

    it('DeleteSnapshot: missing id INVALID_ARGUMENT, unknown and repeated deletes succeed', async () => {
      const v = await create(unique('ds'))
      const s = (await d.controller('CreateSnapshot', { name: unique('dss'), source_volume_id: v.volume_id })).snapshot as Wire
      await rejectsWith(d.controller('DeleteSnapshot', { snapshot_id: '' }), Status.INVALID_ARGUMENT)
      await d.controller('DeleteSnapshot', { snapshot_id: 'never-existed' })
      await d.controller('DeleteSnapshot', { snapshot_id: s.snapshot_id })
      await d.controller('DeleteSnapshot', { snapshot_id: s.snapshot_id })
      assert.deepEqual(entriesOf(await d.controller('ListSnapshots', { snapshot_id: s.snapshot_id })), [])
    })

    full('ListSnapshots filters by id and by source volume and pages through them', async () => {
      const v = await create(unique('ls'))
      const other = await create(unique('lso'))
      const ids: string[] = []
      for (let i = 0; i < 3; i++) ids.push(String(((await d.controller('CreateSnapshot', { name: unique('lss'), source_volume_id: v.volume_id })).snapshot as Wire).snapshot_id))
      await d.controller('CreateSnapshot', { name: unique('lss'), source_volume_id: other.volume_id })
      const byId = entriesOf(await d.controller('ListSnapshots', { snapshot_id: ids[1] }))
      assert.deepEqual(byId.map((e) => (e.snapshot as Wire).snapshot_id), [ids[1]])
      assert.deepEqual(entriesOf(await d.controller('ListSnapshots', { snapshot_id: ids[1], source_volume_id: other.volume_id })), [])
      assert.deepEqual(entriesOf(await d.controller('ListSnapshots', { snapshot_id: 'missing-snap' })), [])
      const seen: string[] = []
      let token = ''
      do {
        const res = await d.controller('ListSnapshots', { source_volume_id: v.volume_id, max_entries: 2, starting_token: token })
        seen.push(...entriesOf(res).map((e) => String((e.snapshot as Wire).snapshot_id)))
        token = String(res.next_token)
      } while (token !== '')
      assert.deepEqual(seen.sort(), [...ids].sort())
    })

    it('ControllerExpandVolume grows only; node expansion for mounts, not for raw block', async () => {
      const v = await create(unique('exp'))
      await rejectsWith(d.controller('ControllerExpandVolume', { volume_id: v.volume_id }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerExpandVolume', { volume_id: '', capacity_range: { required_bytes: 8 * MiB } }), Status.INVALID_ARGUMENT)
      await rejectsWith(d.controller('ControllerExpandVolume', { volume_id: 'missing-vol', capacity_range: { required_bytes: 8 * MiB } }), Status.NOT_FOUND)
      const grown = await d.controller('ControllerExpandVolume', { volume_id: v.volume_id, capacity_range: { required_bytes: 8 * MiB + 1 }, volume_capability: MOUNT_SNW })
      assert.deepEqual(grown, { capacity_bytes: 8 * MiB + 4096, node_expansion_required: true })
      assert.equal((await h.cp.getVolume(String(v.volume_id))).sizeBytes, 8 * MiB + 4096)
      const block = await d.controller('ControllerExpandVolume', { volume_id: v.volume_id, capacity_range: { required_bytes: 16 * MiB }, volume_capability: BLOCK_SNW })
      assert.equal(block.node_expansion_required, false)
      // Already big enough: success at the current size. Smaller than it within a limit: OUT_OF_RANGE.
      assert.equal((await d.controller('ControllerExpandVolume', { volume_id: v.volume_id, capacity_range: { required_bytes: MiB } })).capacity_bytes, 16 * MiB)
      await rejectsWith(d.controller('ControllerExpandVolume', { volume_id: v.volume_id, capacity_range: { required_bytes: MiB, limit_bytes: 2 * MiB } }), Status.OUT_OF_RANGE)
    })

    it('a call on a volume whose lock is held is ABORTED; after release it succeeds', async () => {
      const v = await create(unique('lock'))
      const id = String(v.volume_id)
      const release = d.locks.acquire(volumeKey(id))
      try {
        await rejectsWith(create(id), Status.ABORTED, 'CreateVolume')
        await rejectsWith(d.controller('DeleteVolume', { volume_id: id }), Status.ABORTED, 'DeleteVolume')
        await rejectsWith(d.controller('ControllerPublishVolume', { volume_id: id, node_id: 'n', volume_capability: MOUNT_SNW }), Status.ABORTED, 'Publish')
        await rejectsWith(d.controller('ControllerUnpublishVolume', { volume_id: id, node_id: 'n' }), Status.ABORTED, 'Unpublish')
        await rejectsWith(d.controller('ControllerExpandVolume', { volume_id: id, capacity_range: { required_bytes: 8 * MiB } }), Status.ABORTED, 'Expand')
        await rejectsWith(d.controller('CreateSnapshot', { name: unique('ls'), source_volume_id: id }), Status.ABORTED, 'CreateSnapshot')
      } finally {
        release()
      }
      await d.controller('DeleteVolume', { volume_id: id })
    })

    it('two concurrent publishes of one volume: one wins, the other is ABORTED or sees the winner', async () => {
      const v = await create(unique('race'))
      const results = await Promise.allSettled(['n1', 'n2'].map((node) => d.controller('ControllerPublishVolume', { volume_id: v.volume_id, node_id: node, volume_capability: MOUNT_SNW })))
      const won = results.filter((r) => r.status === 'fulfilled')
      assert.equal(won.length, 1, 'exactly one publish wins')
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      assert.ok([Status.ABORTED, Status.FAILED_PRECONDITION].includes(lost.reason.code), `loser code ${lost.reason.code}`)
      assert.notEqual((await h.cp.getVolume(String(v.volume_id))).status.attachment, null)
    })

    it('metrics: every call is timed and errors are counted by code', async () => {
      await rejectsWith(d.controller('DeleteVolume', { volume_id: '' }), Status.INVALID_ARGUMENT)
      const text = await d.registry.metrics()
      assert.match(text, /cairn_csi_request_duration_seconds_count\{method="CreateVolume"\} [1-9]/)
      assert.match(text, /cairn_csi_request_errors_total\{method="DeleteVolume",code="INVALID_ARGUMENT"\} [1-9]/)
    })
  })
}
