// Tables for the operator's durability decisions, without an API server:
// member state over the down timeout, peer-id precedence, the health of a
// volume from the map and the backlog, and the repair/scrub sums.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { durabilityStatus } from './durability-status.js'
import { buildMembers, memberState } from './membership.js'
import { NotReadyTracker } from './not-ready-tracker.js'
import { reportOf, type UsageReport } from './usage-poller.js'
import { volumeHealth } from './volume-reconciler.js'
import type { BlockStoreObject, CrdMember, NodeObject, PodObject } from './types.js'

const node = (name: string, annotations?: Record<string, string>): NodeObject => ({
  metadata: { name, labels: { zone: `z-${name}` }, annotations },
  status: { capacity: { 'ephemeral-storage': '100Gi', memory: '8Gi' } },
})
const pod = (nodeName: string, ip: string, ready: boolean): PodObject => ({
  metadata: { name: `pod-${nodeName}` },
  spec: { nodeName },
  status: { podIP: ip, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
})
const member = (id: string, state: CrdMember['state'], failureDomain = `z-${id}`): CrdMember => ({ id, node: id, address: `${id}:7700`, failureDomain, weightBytes: 1, state })

describe('member state over the down timeout', () => {
  const cases: Array<[string, boolean, CrdMember['state'] | undefined, number | undefined, number, CrdMember['state']]> = [
    // goal, ready, published state, not ready since, now, expected
    ['a ready member is Up', true, 'Down', undefined, 0, 'Up'],
    ['a member never seen ready is Joining', false, undefined, 0, 10_000, 'Joining'],
    ['Joining stays Joining however long', false, 'Joining', 0, 10 ** 9, 'Joining'],
    ['an Up member just gone stays Up', false, 'Up', 1000, 1000, 'Up'],
    ['one ms before the timeout it is still Up', false, 'Up', 1000, 1000 + 59_999, 'Up'],
    ['at the timeout it is Down', false, 'Up', 1000, 1000 + 60_000, 'Down'],
    ['Down stays Down until ready', false, 'Down', 1000, 1001, 'Down'],
    ['Draining keeps draining within the timeout', false, 'Draining', 0, 1, 'Draining'],
  ]
  for (const [goal, ready, before, since, now, expected] of cases) {
    it(goal, () => assert.equal(memberState(ready, before === undefined ? undefined : member('a', before), since, now, 60_000), expected))
  }

  it('the tracker keeps the first moment a member was seen not ready, and forgets it once ready', () => {
    const t = new NotReadyTracker()
    assert.deepEqual([...t.observe('bs', new Map([['a', false], ['b', true]]), 100)], [['a', 100]])
    assert.deepEqual([...t.observe('bs', new Map([['a', false], ['b', false]]), 200)], [['a', 100], ['b', 200]])
    assert.deepEqual([...t.observe('bs', new Map([['a', true], ['b', false]]), 300)], [['b', 200]])
    assert.deepEqual([...t.observe('bs', new Map([['a', false]]), 400)], [['a', 400]], 'a member that left is forgotten; one that comes back starts afresh')
    t.forget('bs')
    assert.deepEqual([...t.observe('bs', new Map([['a', false]]), 500)], [['a', 500]])
  })

  it('buildMembers applies the timeout from the tracker and the clock', () => {
    const spec = { failureDomainKey: 'zone' }
    const previous = [member('a', 'Up')]
    const at = (nowMs: number) => buildMembers(spec, [node('a')], [pod('a', '10.0.0.1', false)], { previous, notReadySinceMs: new Map([['a', 0]]), nowMs, downTimeoutMs: 600_000 })[0]?.state
    assert.equal(at(599_999), 'Up')
    assert.equal(at(600_000), 'Down')
  })
})

describe('peer ids and mesh addresses', () => {
  const spec = { failureDomainKey: 'zone' }
  it('takes the peer id the node reported, else the annotation, else the published one', () => {
    const nodes = [node('a', { 'cairn.dev/peer-id': 'annotated-a' }), node('b', { 'cairn.dev/peer-id': 'annotated-b' }), node('c')]
    const previous = [{ ...member('c', 'Up'), peerId: 'published-c' }]
    const members = buildMembers(spec, nodes, [], { previous, peerIdByNode: new Map([['a', 'reported-a']]) })
    assert.deepEqual(members.map((m) => m.peerId), ['reported-a', 'annotated-b', 'published-c'])
  })
  it('reads an empty wire peer id and null counters as absent', () => {
    const report = reportOf({ shardCount: 0, shardBytes: 0, segmentCount: 0, segmentBytes: 0, corruptShardCount: 0, capacityBytes: 5, usedBytes: 1, peerId: '', scrub: null, repair: null })
    assert.deepEqual(report, { capacityBytes: 5, usedBytes: 1 })
  })
})

describe('volume health', () => {
  const bs = (members: CrdMember[], backlogShards?: number): BlockStoreObject => ({
    metadata: { name: 'bs' },
    spec: {},
    status: { clusterMap: { epoch: 3, members }, ...(backlogShards === undefined ? {} : { repair: { backlogShards, repairedShards: 0, movedShards: 0, movedBytes: 0 } }) },
  })
  const up = ['a', 'b', 'c', 'd'].map((id) => member(id, 'Up'))
  const cases: Array<[string, BlockStoreObject | undefined, number | undefined, string]> = [
    ['no block store: Unknown', undefined, 1, 'Unknown'],
    ['no map yet: Unknown', bs([]), 1, 'Unknown'],
    ['no policy: Unknown', bs(up), undefined, 'Unknown'],
    ['all Up, no backlog: Healthy', bs(up, 0), 1, 'Healthy'],
    ['all Up, no repair report: Healthy', bs(up), 1, 'Healthy'],
    ['a backlog: Degraded', bs(up, 3), 1, 'Degraded'],
    ['one Down of m=1: Degraded', bs([member('a', 'Down'), ...up.slice(1)], 0), 1, 'Degraded'],
    ['two Down of m=1: Unavailable', bs([member('a', 'Down'), member('b', 'Down'), ...up.slice(2)], 0), 1, 'Unavailable'],
    ['two Down of m=2: Degraded', bs([member('a', 'Down'), member('b', 'Down'), ...up.slice(2)], 0), 2, 'Degraded'],
    ['two Down in one failure domain lose one shard per chunk: Degraded', bs([member('a', 'Down', 'z1'), member('b', 'Down', 'z1'), ...up.slice(2)], 0), 1, 'Degraded'],
    ['Joining members serve nothing either', bs([member('a', 'Joining'), member('b', 'Joining'), ...up.slice(2)]), 1, 'Unavailable'],
    ['Draining still serves', bs([member('a', 'Draining'), ...up.slice(1)], 0), 0, 'Healthy'],
    ['m=0 and one Down: Unavailable', bs([member('a', 'Down'), ...up.slice(1)], 0), 0, 'Unavailable'],
  ]
  for (const [goal, store, m, expected] of cases) {
    it(goal, () => assert.equal(volumeHealth(store, m).health, expected))
  }
})

describe('repair and scrub status', () => {
  const repair = (backlogShards: number, lastPassCompletedUnixMs: number) => ({ backlogShards, repairedShards: 2, repairedBytes: 8, movedShards: 1, movedBytes: 4, passesCompleted: 1, lastPassCompletedUnixMs })
  it('sums counters, dates a pass by the slowest node, and keeps stored figures when no node reports', () => {
    const reports = new Map<string, UsageReport>([
      ['a', { capacityBytes: 1, usedBytes: 0, repair: repair(1, Date.parse('2026-01-02T00:00:00Z')) }],
      ['b', { capacityBytes: 1, usedBytes: 0, repair: repair(2, Date.parse('2026-01-01T00:00:00Z')) }],
      ['c', { capacityBytes: 1, usedBytes: 0 }],
    ])
    assert.deepEqual(durabilityStatus(reports, {}).repair, { backlogShards: 3, repairedShards: 4, movedShards: 2, movedBytes: 8, lastPassTime: '2026-01-01T00:00:00Z' })
    reports.set('c', { capacityBytes: 1, usedBytes: 0, repair: repair(0, 0) })
    assert.equal(durabilityStatus(reports, {}).repair?.lastPassTime, undefined, 'a node that never completed a pass: no cluster-wide pass time')
    const stored = { scrub: { scrubbedShards: 9, badShards: 1 } }
    assert.deepEqual(durabilityStatus(new Map(), stored), stored)
  })
})
