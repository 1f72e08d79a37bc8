// Pure parts of the operator: quantities, eligibility, allocation, cluster-map
// epochs, and the keyed work queue's guarantees.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { allocationBytes, buildMembers, nextClusterMap, nodeEligibility, toCoreClusterMap } from './membership.js'
import { parseQuantity } from './quantity.js'
import { storageNodeLabel } from './constants.js'
import { WorkQueue } from './work-queue.js'
import type { NodeObject, PodObject } from './types.js'

const GiB = 2 ** 30

describe('parseQuantity', () => {
  const table: [string, number][] = [
    ['128974848', 128974848], ['129e6', 129e6], ['129M', 129e6], ['123Mi', 123 * 2 ** 20], ['1.5Gi', 1.5 * GiB],
    ['100Ki', 102400], ['1k', 1000], ['1G', 1e9], ['100m', 1], ['1500m', 2], ['2Ti', 2 * 2 ** 40], ['0', 0], ['.5Ki', 512],
  ]
  for (const [text, want] of table) it(`reads ${text}`, () => assert.equal(parseQuantity(text), want))
  for (const bad of ['', 'Gi', '1.2.3', '12XB', '1 Gi', 'ten']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseQuantity(bad), { name: 'InvalidQuantityError' }))
  }
})

function node(name: string, labels: Record<string, string>, disk = '100Gi', memory = '8Gi'): NodeObject {
  return { metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } }, status: { capacity: { 'ephemeral-storage': disk, memory }, allocatable: { memory } } }
}

describe('eligibility and allocation', () => {
  const spec = { nodeSelector: { matchExpressions: [{ key: 'role', operator: 'In' as const, values: ['storage'] }] }, eligibility: { minDiskBytes: 10 * GiB, minMemoryBytes: GiB } }
  it('needs the selector, enough disk (label first) and enough memory', () => {
    assert.equal(nodeEligibility(spec, node('a', { role: 'storage' })).reason, 'eligible')
    assert.equal(nodeEligibility(spec, node('b', { role: 'compute' })).reason, 'selector')
    assert.equal(nodeEligibility(spec, node('c', { role: 'storage' }, '5Gi')).reason, 'disk-too-small')
    assert.equal(nodeEligibility(spec, node('d', { role: 'storage', 'cairn.dev/disk-bytes': String(20 * GiB) }, '5Gi')).reason, 'eligible')
    assert.equal(nodeEligibility(spec, node('e', { role: 'storage' }, '100Gi', '512Mi')).reason, 'memory-too-small')
  })
  it('allocates fraction × disk clamped to [min, max] and never more than the disk', () => {
    assert.equal(allocationBytes({ capacity: { fraction: 0.5 } }, 100 * GiB), 50 * GiB)
    assert.equal(allocationBytes({ capacity: { fraction: 0.5, maxBytes: 10 * GiB } }, 100 * GiB), 10 * GiB)
    assert.equal(allocationBytes({ capacity: { fraction: 0.1, minBytes: 20 * GiB } }, 100 * GiB), 20 * GiB)
    assert.equal(allocationBytes({ capacity: { fraction: 0.1, minBytes: 200 * GiB } }, 100 * GiB), 100 * GiB)
  })
  it('keeps node label keys within 63 characters, distinct per block store', () => {
    const long = 'x'.repeat(200)
    assert.ok(storageNodeLabel(long).split('/')[1]!.length <= 63)
    assert.notEqual(storageNodeLabel(long), storageNodeLabel(`${long}y`))
    assert.equal(storageNodeLabel('bs'), 'cairn.dev/storage-node.bs')
  })
})

describe('cluster map epochs', () => {
  const spec = { failureDomainKey: 'zone' }
  const withPeer = (n: NodeObject, peer: string): NodeObject => ({ ...n, metadata: { ...n.metadata, annotations: { 'cairn.dev/peer-id': peer } } })
  it('moves exactly when a member changes, and converts to a valid core map', () => {
    const nodes = [withPeer(node('a', { zone: 'z1' }), 'pa'), withPeer(node('b', { zone: 'z2' }), 'pb')]
    const m0 = nextClusterMap(undefined, [])
    assert.equal(m0.epoch, 0)
    const m1 = nextClusterMap(m0, buildMembers(spec, nodes, []))
    assert.equal(m1.epoch, 1)
    assert.equal(nextClusterMap(m1, buildMembers(spec, [...nodes].reverse(), [])), m1, 'order does not matter')
    const pod = { metadata: { name: 'p' }, spec: { nodeName: 'a' }, status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'False' }] } }
    const m2 = nextClusterMap(m1, buildMembers(spec, nodes, [pod]))
    assert.equal(m2.epoch, 2)
    assert.deepEqual(m2.members.find((m) => m.id === 'a'), { id: 'a', node: 'a', address: '10.0.0.1:7700', meshAddress: '10.0.0.1:7800', peerId: 'pa', failureDomain: 'z1', weightBytes: Math.floor(100 * GiB * 0.8), state: 'Joining' })
    const readyPod = { metadata: { name: 'q' }, spec: { nodeName: 'b' }, status: { podIP: 'fd00::2', conditions: [{ type: 'Ready', status: 'True' }] } }
    const m3 = nextClusterMap(m2, buildMembers(spec, nodes, [pod, readyPod], { previous: m2.members }))
    assert.deepEqual(m3.members.map((m) => [m.id, m.address, m.meshAddress, m.state]), [['a', '10.0.0.1:7700', '10.0.0.1:7800', 'Joining'], ['b', '[fd00::2]:7700', '[fd00::2]:7800', 'Up']])
    const core = toCoreClusterMap(m2)
    assert.equal(core.members.find((m) => m.id === 'a')?.state, 'down')
    assert.equal(core.members.find((m) => m.id === 'b')?.weight, 80)
  })
})

describe('cluster map members', () => {
  const spec = { failureDomainKey: 'zone' }
  const ready = (node: string, ip: string, ok = true): PodObject => ({ metadata: { name: `pod-${node}` }, spec: { nodeName: node }, status: { podIP: ip, conditions: [{ type: 'Ready', status: ok ? 'True' : 'False' }] } })
  it('is Up only with a ready pod that has an IP, Joining until it first is, and keeps its last addresses', () => {
    const nodes = [node('a', {}), node('b', {}), node('c', {}), node('d', {})]
    const unready = ready('b', '10.0.0.2', false)
    const noIp: PodObject = { metadata: { name: 'pod-c' }, spec: { nodeName: 'c' }, status: { conditions: [{ type: 'Ready', status: 'True' }] } }
    const members = buildMembers(spec, nodes, [ready('a', '10.0.0.1'), unready, noIp])
    assert.deepEqual(members.map((m) => [m.id, m.address, m.state]), [
      ['a', '10.0.0.1:7700', 'Up'],
      ['b', '10.0.0.2:7700', 'Joining'],
      ['c', 'c:7700', 'Joining'],
      ['d', 'd:7700', 'Joining'],
    ])
    // Without a timeout (the pure function's default) a member that stops serving is Down at once.
    const gone = buildMembers(spec, nodes, [], { previous: members })
    assert.equal(gone.find((m) => m.id === 'a')?.address, '10.0.0.1:7700', 'a member whose pod went keeps its address while Down')
    assert.equal(gone.find((m) => m.id === 'a')?.meshAddress, '10.0.0.1:7800')
    assert.equal(gone.find((m) => m.id === 'a')?.state, 'Down')
    const notReadyNode = { ...nodes[0]!, status: { ...nodes[0]!.status, conditions: [{ type: 'Ready', status: 'False' }] } }
    assert.equal(buildMembers(spec, [notReadyNode], [ready('a', '10.0.0.1')], { previous: members })[0]?.state, 'Down', 'a NotReady node is Down whatever its pod says')
  })
  it('prefers the ready pod of a node during a rollout, and ignores pods being deleted', () => {
    const deleting = { ...ready('a', '10.0.0.9'), metadata: { name: 'old', deletionTimestamp: '2026-01-01T00:00:00Z' } }
    const members = buildMembers(spec, [node('a', {})], [ready('a', '10.0.0.3', false), deleting, ready('a', '10.0.0.4')])
    assert.deepEqual(members.map((m) => [m.address, m.state]), [['10.0.0.4:7700', 'Up']])
  })
  it('weights by the reported allocation, else the published weight, else the disk estimate', () => {
    const nodes = [node('a', {}), node('b', {}), node('c', {})]
    const previous = buildMembers(spec, nodes, []).map((m) => (m.id === 'b' ? { ...m, weightBytes: 7 * GiB } : m))
    const members = buildMembers(spec, nodes, [], { previous: previous.filter((m) => m.id !== 'c'), capacityByNode: new Map([['a', 3 * GiB]]) })
    assert.deepEqual(members.map((m) => m.weightBytes), [3 * GiB, 7 * GiB, Math.floor(100 * GiB * 0.8)])
  })
})

describe('WorkQueue', () => {
  it('dedups waiting keys, runs one reconcile per key at a time, and reruns a key added while it runs', async () => {
    const running = new Set<string>()
    const runs: string[] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const queue = new WorkQueue({ concurrency: 4 }, async (key) => {
      assert.ok(!running.has(key), `two reconciles of ${key} at once`)
      running.add(key)
      runs.push(key)
      if (runs.length === 1) await gate
      running.delete(key)
    })
    await queue.start()
    queue.add('a')
    queue.add('a') // running now: marked dirty, rerun after
    queue.add('a') // already dirty: deduplicated
    queue.add('b')
    release()
    await queue.idle()
    await queue.idle()
    assert.deepEqual(runs.sort(), ['a', 'a', 'b'])
    await queue.stop()
  })
  it('bounds the keys it holds and the backoff it applies', async () => {
    const seed = 7
    let state = seed
    const random = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const queue = new WorkQueue({ maxKeys: 2, backoffBaseMs: 10, backoffMaxMs: 1000, random }, async () => undefined)
    await queue.start()
    queue.stop() // nothing runs: stopped queues refuse
    assert.equal(queue.add('x'), false)
    const bounded = new WorkQueue({ maxKeys: 2, concurrency: 1 }, () => new Promise(() => undefined))
    await bounded.start()
    assert.equal(bounded.add('running'), true)
    assert.equal(bounded.add('w1'), true)
    assert.equal(bounded.add('w2'), true)
    assert.equal(bounded.add('w3'), false, `full queue refuses (seed ${seed})`)
    for (let n = 1; n < 40; n++) {
      const d = queue.backoffMs(n)
      const raw = Math.min(1000, 10 * 2 ** (n - 1))
      assert.ok(d >= raw / 2 && d <= raw, `backoff ${n} = ${d} (seed ${seed})`)
    }
  })
})
