import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { KeyedLocks } from './locks.js'
import { capabilityProblem, objectNameFor, sizeFits, sizeForRange } from './validation.js'
import type { AccessMode, VolumeCapability } from './types.js'

const MiB = 1024 * 1024

describe('sizeForRange', () => {
  const cases: Array<[string, { requiredBytes: number; limitBytes: number } | undefined, number | string]> = [
    ['no range: the fallback', undefined, MiB],
    ['zero bounds: the fallback', { requiredBytes: 0, limitBytes: 0 }, MiB],
    ['required rounds up to 4096', { requiredBytes: 1, limitBytes: 0 }, 4096],
    ['exact multiple kept', { requiredBytes: 8192, limitBytes: 8192 }, 8192],
    ['limit only: the fallback when it fits', { requiredBytes: 0, limitBytes: 2 * MiB }, MiB],
    ['limit only: the largest multiple below the limit', { requiredBytes: 0, limitBytes: 10_000 }, 8192],
    ['rounded size above limit', { requiredBytes: 5000, limitBytes: 6000 }, 'CapacityOutOfRangeError'],
    ['limit below one block', { requiredBytes: 0, limitBytes: 100 }, 'CapacityOutOfRangeError'],
    ['beyond 2^53', { requiredBytes: Number.MAX_SAFE_INTEGER, limitBytes: 0 }, 'CapacityOutOfRangeError'],
    ['required above limit', { requiredBytes: 10, limitBytes: 5 }, 'InvalidArgumentError'],
    ['negative', { requiredBytes: -4096, limitBytes: 0 }, 'InvalidArgumentError'],
  ]
  for (const [why, range, expected] of cases) {
    it(why, () => {
      if (typeof expected === 'number') assert.equal(sizeForRange(range, MiB), expected)
      else assert.throws(() => sizeForRange(range, MiB), { name: expected })
    })
  }

  it('sizeFits treats 0 bounds as absent', () => {
    assert.equal(sizeFits(MiB, undefined), true)
    assert.equal(sizeFits(MiB, { requiredBytes: MiB + 1, limitBytes: 0 }), false)
    assert.equal(sizeFits(MiB, { requiredBytes: 0, limitBytes: MiB - 1 }), false)
  })
})

describe('objectNameFor', () => {
  it('keeps DNS-1123 names and hashes others stably', () => {
    assert.equal(objectNameFor('name', 'pvc-1234', 'vol'), 'pvc-1234')
    const hashed = objectNameFor('name', 'Upper Case', 'snap')
    assert.match(hashed, /^snap-[0-9a-f]{40}$/)
    assert.equal(objectNameFor('name', 'Upper Case', 'snap'), hashed)
    assert.notEqual(objectNameFor('name', 'Upper Case 2', 'snap'), hashed)
  })

  it('refuses empty, too long and control-character names', () => {
    assert.throws(() => objectNameFor('name', '', 'vol'), { name: 'InvalidArgumentError' })
    assert.throws(() => objectNameFor('name', 'a'.repeat(129), 'vol'), { name: 'InvalidArgumentError' })
    assert.throws(() => objectNameFor('name', 'tab\u0007bell', 'vol'), { name: 'InvalidArgumentError' })
  })
})

describe('capabilityProblem', () => {
  const mount = (accessMode: AccessMode, fsType = ''): VolumeCapability => ({ accessType: { kind: 'mount', fsType, mountFlags: [], volumeMountGroup: '' }, accessMode })
  const table: Array<[VolumeCapability, boolean, boolean]> = [
    [mount('SINGLE_NODE_WRITER'), false, true],
    [mount('SINGLE_NODE_SINGLE_WRITER', 'xfs'), false, true],
    [mount('SINGLE_NODE_MULTI_WRITER', 'ext4'), false, true],
    [{ accessType: { kind: 'block' }, accessMode: 'SINGLE_NODE_WRITER' }, false, true],
    [mount('MULTI_NODE_READER_ONLY'), true, true],
    [mount('MULTI_NODE_READER_ONLY'), false, false],
    [mount('MULTI_NODE_MULTI_WRITER'), true, false],
    [mount('MULTI_NODE_SINGLE_WRITER'), true, false],
    [mount('SINGLE_NODE_READER_ONLY'), false, false],
    [mount('UNKNOWN'), false, false],
    [mount('SINGLE_NODE_WRITER', 'btrfs'), false, false],
    [{ accessType: undefined, accessMode: 'SINGLE_NODE_WRITER' }, false, false],
  ]
  for (const [cap, fromSnapshot, supported] of table) {
    it(`${cap.accessType?.kind ?? 'none'} ${cap.accessType?.kind === 'mount' ? cap.accessType.fsType || 'default-fs' : ''} ${cap.accessMode} fromSnapshot=${fromSnapshot}: ${supported ? 'supported' : 'refused'}`, () => {
      assert.equal(capabilityProblem(cap, fromSnapshot) === undefined, supported)
    })
  }
})

describe('KeyedLocks', () => {
  it('refuses a held key with OperationPendingError and frees it on release', async () => {
    const locks = new KeyedLocks()
    const release = locks.acquire('volume/a')
    assert.throws(() => locks.acquire('volume/a'), { name: 'OperationPendingError' })
    locks.acquire('volume/b')()
    release()
    release()
    assert.equal(locks.isHeld('volume/a'), false)
    await assert.rejects(
      locks.withLocks(['volume/x', 'volume/x'], async () => {
        assert.equal(locks.size, 1)
        throw new Error('boom')
      }),
      /boom/,
    )
    assert.equal(locks.size, 0, 'a failing call releases its locks')
  })

  it('takes no lock at all when one of several keys is held', async () => {
    const locks = new KeyedLocks()
    const release = locks.acquire('k2')
    await assert.rejects(locks.withLocks(['k1', 'k2'], async () => 'ran'), { name: 'OperationPendingError' })
    assert.equal(locks.isHeld('k1'), false)
    release()
  })
})
