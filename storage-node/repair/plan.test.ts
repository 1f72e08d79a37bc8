import { test } from 'node:test'
import assert from 'node:assert/strict'
import { planChunk, type LocalCopy, type PlanInput, type RemoteSlot } from './plan.js'

const OLD = 1_000
const SETTLED_BEFORE = 5_000

function copy(index: number, over: Partial<LocalCopy> = {}): LocalCopy {
  return { index, corrupt: false, sizeBytes: 100, lastPutUnixMs: OLD, ...over }
}

function input(selfId: string, targets: string[], local: LocalCopy[], remote: Record<number, RemoteSlot>): PlanInput {
  return { selfId, targets, local: new Map(local.map((c) => [c.index, c])), remote: (slot) => remote[slot] ?? 'unknown', settledBeforeUnixMs: SETTLED_BEFORE }
}

test('the holder of the lowest healthy slot rebuilds every missing slot, itself included', () => {
  // 2+1 over a, b, c: a's slot 0 is missing, b holds slot 1, c holds slot 2.
  const forB = planChunk(input('b', ['a', 'b', 'c'], [copy(1)], { 0: 'missing', 2: 'healthy' }))
  assert.equal(forB.responsibleSlot, 1)
  assert.deepEqual(forB.rebuilds, [{ index: 0, target: 'a' }])
  const forC = planChunk(input('c', ['a', 'b', 'c'], [copy(2)], { 0: 'missing', 1: 'healthy' }))
  assert.deepEqual(forC.rebuilds, [], 'c is not responsible: b holds a lower healthy slot')
  assert.equal(forC.responsibleSlot, undefined)
})

test('a corrupt own copy is missing: a lower healthy holder rebuilds it onto this node', () => {
  const forA = planChunk(input('a', ['a', 'b', 'c'], [copy(0, { corrupt: true })], { 1: 'healthy', 2: 'healthy' }))
  assert.deepEqual(forA.rebuilds, [])
  const forB = planChunk(input('b', ['a', 'b', 'c'], [copy(1)], { 0: 'missing', 2: 'healthy' }))
  assert.deepEqual(forB.rebuilds, [{ index: 0, target: 'a' }])
})

test('a down target is deferred, never rebuilt onto or counted healthy', () => {
  const plan = planChunk(input('a', ['a', 'b', 'c'], [copy(0)], { 1: 'unknown', 2: 'missing' }))
  assert.deepEqual(plan.rebuilds, [{ index: 2, target: 'c' }])
  assert.deepEqual(plan.deferred, [{ index: 1, reason: 'target-down' }])
})

test('a misplaced copy moves when its target lacks it and is deleted only when its target confirmed one', () => {
  const table: { remote: RemoteSlot; copy: LocalCopy; want: 'move' | 'delete' | 'defer' | 'nothing' }[] = [
    { remote: 'missing', copy: copy(1), want: 'move' },
    { remote: 'healthy', copy: copy(1), want: 'delete' },
    { remote: 'healthy', copy: copy(1, { corrupt: true }), want: 'delete' },
    { remote: 'missing', copy: copy(1, { corrupt: true }), want: 'nothing' },
    { remote: 'unknown', copy: copy(1), want: 'defer' },
    { remote: 'missing', copy: copy(1, { lastPutUnixMs: SETTLED_BEFORE }), want: 'defer' },
  ]
  for (const row of table) {
    const plan = planChunk(input('x', ['a', 'b', 'c'], [row.copy], { 0: 'healthy', 1: row.remote, 2: 'healthy' }))
    const got = plan.moves.length > 0 ? 'move' : plan.deletes.length > 0 ? 'delete' : plan.deferred.length > 0 ? 'defer' : 'nothing'
    assert.equal(got, row.want, JSON.stringify(row))
    if (got === 'move') assert.deepEqual(plan.moves, [{ index: 1, target: 'b' }])
    assert.deepEqual(plan.rebuilds, [], 'a node outside the placement never rebuilds')
  }
})

test('no rebuild is triggered by a copy written moments ago (its write may still be in flight)', () => {
  const plan = planChunk(input('a', ['a', 'b', 'c'], [copy(0, { lastPutUnixMs: SETTLED_BEFORE + 1 })], { 1: 'missing', 2: 'healthy' }))
  assert.deepEqual(plan.rebuilds, [])
  assert.deepEqual(plan.deferred, [{ index: 1, reason: 'unsettled' }])
})

test('when every slot is missing nobody is responsible', () => {
  const plan = planChunk(input('a', ['a', 'b', 'c'], [copy(0, { corrupt: true })], { 1: 'missing', 2: 'missing' }))
  assert.equal(plan.responsibleSlot, undefined)
  assert.deepEqual(plan.rebuilds, [])
})

test('a missing slot whose copy still sits where an earlier epoch put it is left to that holder to move, not rebuilt', () => {
  const base = input('a', ['a', 'b', 'c'], [copy(0)], { 1: 'missing', 2: 'missing' })
  const plan = planChunk({ ...base, elsewhere: (slot) => slot === 1 })
  assert.deepEqual(plan.rebuilds, [{ index: 2, target: 'c' }])
  const ownMisplaced = planChunk(input('a', ['a', 'b', 'c'], [copy(0), copy(1)], { 1: 'missing', 2: 'healthy' }))
  assert.deepEqual(ownMisplaced.rebuilds, [], 'this node moves its own misplaced copy instead of rebuilding it')
  assert.deepEqual(ownMisplaced.moves, [{ index: 1, target: 'b' }])
})

test('a holder of a slot above m is never responsible, so it plans no rebuild (and asks nobody)', () => {
  const plan = planChunk({ ...input('c', ['a', 'b', 'c'], [copy(2)], { 0: 'missing', 1: 'missing' }), mayRebuild: false })
  assert.deepEqual(plan.rebuilds, [])
  assert.deepEqual(plan.deferred, [])
})
