// Conversions where the CRD and the domain differ: each mapping stated in convert.ts, checked.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { API_VERSION } from './constants.js'
import { clusterMapFromCr, clusterMapToCr, storagePolicyFromCr, volumeFromCr, withVolumeStatus, WEIGHT_UNIT_BYTES } from './convert.js'
import type { CustomResource, JsonRecord } from './resource.js'

function cr(kind: string, spec: JsonRecord, status?: JsonRecord, annotations?: Record<string, string>): CustomResource {
  const metadata = { name: 'x', uid: 'u', resourceVersion: '1', creationTimestamp: '2026-01-01T00:00:00Z', ...(annotations ? { annotations } : {}) }
  return { apiVersion: API_VERSION, kind, metadata, spec, ...(status ? { status } : {}) }
}

describe('CR conversions', () => {
  it('cluster map: weights in whole bytes per 2^-30, Joining reads as down, node is not kept', () => {
    const map = clusterMapFromCr(cr('BlockStore', { hostPath: '/d' }, {
      clusterMap: {
        epoch: 3,
        members: [
          { id: 'a', node: 'k8s-a', address: 'h:1', peerId: 'p', failureDomain: 'z', weightBytes: 3 * WEIGHT_UNIT_BYTES, state: 'Up' },
          { id: 'b', node: 'k8s-b', address: 'h:2', peerId: 'q', failureDomain: 'z', weightBytes: 0, state: 'Joining' },
        ],
      },
    }))
    assert.deepEqual(map.members.map((m) => [m.id, m.weight, m.state]), [['a', 3, 'active'], ['b', 0, 'down']])
  })

  it('cluster map: a weight that rounds to zero bytes for an active member is refused on publish', () => {
    const member = { id: 'a', address: 'h:1', peerId: 'p', failureDomain: 'z', weight: 2 ** -40, state: 'active' as const }
    assert.throws(() => clusterMapToCr({ epoch: 1, members: [member] }), { name: 'InvalidArgumentError' })
  })

  it("storage policy: the CRD's 0 (unlimited) repair bandwidth and unset journalReplicas read back", () => {
    const p = storagePolicyFromCr(cr('StoragePolicy', { blockStore: 'bs', dataShards: 4, parityShards: 2, repairBandwidthBytesPerSecond: 0 }))
    assert.equal(p.repairBandwidthBytesPerSecond, 0)
    assert.equal(p.journalReplicas, 3)
    assert.equal(p.chunkSizeBytes, 65536)
  })

  it('volume: a restore without status reads its head from the annotation; without one it is malformed', () => {
    const spec = { blockStore: 'bs', storagePolicy: 'p', sizeBytes: 8192, source: { snapshot: 's' } }
    const head = { rootCid: null, sizeBytes: 4096, journalSeq: 0 }
    const v = volumeFromCr(cr('Volume', spec, undefined, { 'cairn.dev/initial-head': JSON.stringify(head) }))
    assert.deepEqual(v.status.head, head)
    assert.equal(v.status.epoch, 0)
    assert.throws(() => volumeFromCr(cr('Volume', spec)), { name: 'MalformedObjectError' })
    assert.throws(() => volumeFromCr(cr('Volume', { ...spec, sizeBytes: 'big' })), { name: 'MalformedObjectError' })
  })

  it('volume: status.recoveryPending reads back; absent (written before it existed) is false; not a boolean is malformed', () => {
    const spec = { blockStore: 'bs', storagePolicy: 'p', sizeBytes: 8192 }
    const status = { head: { sizeBytes: 8192, journalSeq: 3 }, epoch: 2 }
    assert.equal(volumeFromCr(cr('Volume', spec, status)).status.recoveryPending, false)
    const pending = volumeFromCr(cr('Volume', spec, { ...status, recoveryPending: true }))
    assert.equal(pending.status.recoveryPending, true)
    assert.equal(withVolumeStatus(cr('Volume', spec, status), pending.status).status?.recoveryPending, true)
    assert.throws(() => volumeFromCr(cr('Volume', spec, { ...status, recoveryPending: 'yes' })), { name: 'MalformedObjectError' })
  })
})
