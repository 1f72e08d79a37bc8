import { test } from 'node:test'
import assert from 'node:assert/strict'
import { InvalidClusterMapError, membersInStates, placeableDomainCount, placementMaps, placementView, validateClusterMap, type ClusterMap, type ClusterMapIssueReason } from './cluster-map.js'

function member(i: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: `node-${i}`, address: `10.0.0.${i}:7400`, peerId: `12D3KooW${i}`, failureDomain: `zone-${i % 3}`, weight: 1, state: 'active', ...extra }
}

test('a valid map comes back as plain data with only the documented fields', () => {
  const input = { epoch: 7, members: [member(1, { future: 'field', meshAddress: '10.0.0.1:7402' }), member(2, { state: 'down', weight: 0 })], extra: true }
  const map = validateClusterMap(JSON.parse(JSON.stringify(input)))
  assert.deepEqual(map, {
    epoch: 7,
    members: [
      { id: 'node-1', address: '10.0.0.1:7400', peerId: '12D3KooW1', meshAddress: '10.0.0.1:7402', failureDomain: 'zone-1', weight: 1, state: 'active' },
      { id: 'node-2', address: '10.0.0.2:7400', peerId: '12D3KooW2', failureDomain: 'zone-2', weight: 0, state: 'down' },
    ],
  })
  assert.deepEqual(JSON.parse(JSON.stringify(map)), map)
})

const invalid: Array<[string, unknown, ClusterMapIssueReason]> = [
  ['a non-object', 'map', 'not-an-object'],
  ['an array', [], 'not-an-object'],
  ['a negative epoch', { epoch: -1, members: [] }, 'bad-epoch'],
  ['a fractional epoch', { epoch: 1.5, members: [] }, 'bad-epoch'],
  ['a string epoch', { epoch: '3', members: [] }, 'bad-epoch'],
  ['members that are not an array', { epoch: 1, members: {} }, 'bad-members'],
  ['a member that is not an object', { epoch: 1, members: [null] }, 'not-an-object'],
  ['duplicate member ids', { epoch: 1, members: [member(1), member(2, { id: 'node-1' })] }, 'duplicate-id'],
  ['duplicate peer ids', { epoch: 1, members: [member(1), member(2, { peerId: '12D3KooW1' })] }, 'duplicate-peer-id'],
  ['an empty id', { epoch: 1, members: [member(1, { id: '' })] }, 'bad-string'],
  ['a missing address', { epoch: 1, members: [member(1, { address: undefined })] }, 'bad-string'],
  ['an overlong failure domain', { epoch: 1, members: [member(1, { failureDomain: 'x'.repeat(254) })] }, 'bad-string'],
  ['a mesh address without a port', { epoch: 1, members: [member(1, { meshAddress: '10.0.0.1' })] }, 'bad-address'],
  ['an empty mesh address', { epoch: 1, members: [member(1, { meshAddress: '' })] }, 'bad-address'],
  ['an unknown state', { epoch: 1, members: [member(1, { state: 'gone' })] }, 'bad-state'],
  ['an active member with weight 0', { epoch: 1, members: [member(1, { weight: 0 })] }, 'bad-weight'],
  ['a negative weight', { epoch: 1, members: [member(1, { weight: -1, state: 'draining' })] }, 'bad-weight'],
  ['an infinite weight', { epoch: 1, members: [member(1, { weight: Infinity })] }, 'bad-weight'],
  ['a NaN weight', { epoch: 1, members: [member(1, { weight: NaN })] }, 'bad-weight'],
  ['a string weight', { epoch: 1, members: [member(1, { weight: '2' })] }, 'bad-weight'],
]
for (const [goal, value, reason] of invalid) {
  test(`validateClusterMap refuses ${goal} with InvalidClusterMapError (${reason})`, () => {
    assert.throws(
      () => validateClusterMap(value),
      (err: unknown) => {
        assert.ok(err instanceof InvalidClusterMapError)
        assert.equal(err.name, 'InvalidClusterMapError')
        assert.equal(err.kind, 'invalid-argument')
        assert.ok(err.issues.some((i) => i.reason === reason), JSON.stringify(err.issues))
        return true
      },
    )
  })
}

test('validateClusterMap reports every problem at once, with paths', () => {
  try {
    validateClusterMap({ epoch: -2, members: [member(1, { weight: 0 }), member(2, { id: 'node-1', state: 'x' })] })
    assert.fail('expected InvalidClusterMapError')
  } catch (err) {
    assert.ok(err instanceof InvalidClusterMapError)
    assert.deepEqual(err.issues.map((i) => `${i.path}:${i.reason}`).sort(), [
      'epoch:bad-epoch',
      'members[0].weight:bad-weight',
      'members[1].id:duplicate-id',
      'members[1].state:bad-state',
    ])
  }
})

test('membersInStates and placeableDomainCount read states and weights, not order', () => {
  const map = validateClusterMap({
    epoch: 3,
    members: [member(0), member(1, { state: 'down' }), member(2, { state: 'draining', weight: 0 }), member(3), member(4)],
  })
  assert.deepEqual([...membersInStates(map, ['down', 'draining'])].sort(), ['node-1', 'node-2'])
  assert.deepEqual([...membersInStates(map, [])], [])
  // zone-2's only member has weight 0, so two of three zones are placeable.
  assert.equal(placeableDomainCount(map), 2)
  assert.equal(placeableDomainCount(map, new Set(['node-1', 'node-4'])), 1)
})

test('placement sees only active members, in a view that keeps the epoch and is the same object while the map is unchanged', () => {
  let map: ClusterMap = validateClusterMap({ epoch: 3, members: [member(1), member(2, { state: 'down' }), member(3, { state: 'draining' })] })
  const earlier: ClusterMap = validateClusterMap({ epoch: 2, members: [member(1), member(2, { state: 'draining' })] })
  const maps = placementMaps({ current: () => map, history: () => [earlier] })
  const first = maps.current()
  assert.equal(first.epoch, 3)
  assert.deepEqual(first.members.map((m) => m.id), ['node-1'])
  assert.equal(maps.current(), first)
  assert.equal(placementView(map), first)
  assert.deepEqual(maps.history?.().map((m) => [m.epoch, m.members.map((x) => x.id)]), [[2, ['node-1']]])
  map = validateClusterMap({ epoch: 4, members: [member(1), member(2)] })
  assert.equal(maps.current(), map, 'a map of active members only is passed through as is')
})
