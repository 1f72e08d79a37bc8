import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { ClusterMap, ClusterMember } from './cluster-map.js'
import { hrwScore, slotKey, xxh64 } from './placement-hash.js'
import { createPlacer, InsufficientDomainsError, place, placementsByEpoch, rank, type Placer } from './placement.js'

const SEED = 0xca1_2004
const CHUNKS = 100_000
const SHARDS = 6

/** SplitMix32-style generator: fixed seeds, printed in every failure message. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** Binary CIDv1 (raw codec, sha2-256 multihash) with random digests. */
function randomCids(count: number, seed: number): Uint8Array[] {
  const next = rng(seed)
  return Array.from({ length: count }, () => {
    const cid = new Uint8Array(36)
    cid.set([0x01, 0x55, 0x12, 0x20])
    for (let i = 4; i < 36; i += 4) new DataView(cid.buffer).setUint32(i, next())
    return cid
  })
}

function member(id: string, failureDomain: string, weight = 1): ClusterMember {
  return { id, address: `${id}.cairn:7400`, peerId: `peer-${id}`, failureDomain, weight, state: 'active' }
}

function oneDomainEach(weights: readonly number[], epoch = 1): ClusterMap {
  return { epoch, members: weights.map((w, i) => member(`node-${i}`, `zone-${i}`, w)) }
}

const ids = (members: readonly ClusterMember[]) => members.map((m) => m.id)

/**
 * The placement rule written as plainly as possible, with full scans and no
 * pruning: slot i takes the best-scoring member whose domain is still free.
 */
function referencePlace(cid: Uint8Array, shardCount: number, map: ClusterMap): string[] {
  const chunk = xxh64(cid)
  const key = new Uint32Array(2)
  const taken = new Set<string>()
  const result: string[] = []
  for (let slot = 0; slot < shardCount; slot++) {
    slotKey(chunk[0] as number, chunk[1] as number, slot, key)
    let best: ClusterMember | undefined
    let bestScore = -1
    for (const m of map.members) {
      if (taken.has(m.failureDomain) || m.weight === 0) continue
      const h = xxh64(new TextEncoder().encode(m.id))
      const score = hrwScore(key[0] as number, key[1] as number, h[0] as number, h[1] as number, m.weight)
      if (score > bestScore || (score === bestScore && best !== undefined && m.id < best.id)) [best, bestScore] = [m, score]
    }
    assert.ok(best !== undefined)
    taken.add(best.failureDomain)
    result.push(best.id)
  }
  return result
}

test('placement matches the plain reference rule', () => {
  const map: ClusterMap = { epoch: 4, members: Array.from({ length: 12 }, (_, i) => member(`n${i}`, `rack-${i % 8}`, 1 + (i % 4))) }
  const placer = createPlacer(map)
  for (const cid of randomCids(3000, SEED)) {
    assert.deepEqual(ids(placer.place(cid, SHARDS)), referencePlace(cid, SHARDS, map), `seed ${SEED}`)
  }
})

test('known-answer vectors pin the hash and the rule', () => {
  const map = oneDomainEach([1, 1, 2, 2, 4, 4, 1, 1, 2, 2, 4, 4])
  const cids = [new TextEncoder().encode('cairn'), Uint8Array.from({ length: 36 }, (_, i) => i), ...randomCids(2, 42)]
  const vectors = cids.map((cid) => ids(place(cid, SHARDS, map)))
  assert.deepEqual(vectors, KNOWN_ANSWERS)
})
const KNOWN_ANSWERS: string[][] = [
  ['node-5', 'node-7', 'node-4', 'node-3', 'node-2', 'node-11'],
  ['node-2', 'node-10', 'node-11', 'node-5', 'node-4', 'node-8'],
  ['node-2', 'node-8', 'node-0', 'node-5', 'node-11', 'node-9'],
  ['node-11', 'node-8', 'node-0', 'node-3', 'node-10', 'node-5'],
]

test('placement is deterministic and independent of member order and object identity', () => {
  const map = oneDomainEach([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  const shuffled: ClusterMap = JSON.parse(JSON.stringify({ ...map, members: [...map.members].reverse() }))
  const a = createPlacer(map)
  const b = createPlacer(shuffled)
  for (const cid of randomCids(2000, SEED + 1)) {
    const expected = ids(a.place(cid, 5))
    assert.deepEqual(ids(b.place(cid, 5)), expected, `seed ${SEED + 1}`)
    assert.deepEqual(ids(place(Uint8Array.from(cid), 5, map)), expected)
  }
})

test('at most one shard per failure domain; place is a prefix of rank and of larger placements', () => {
  const map: ClusterMap = { epoch: 2, members: Array.from({ length: 14 }, (_, i) => member(`n${i}`, `rack-${i % 9}`, 1 + (i % 3))) }
  const domainOf = new Map(map.members.map((m) => [m.id, m.failureDomain]))
  const placer = createPlacer(map)
  for (const cid of randomCids(5000, SEED + 2)) {
    const ranking = ids(placer.rank(cid))
    assert.equal(ranking.length, 9)
    assert.equal(new Set(ranking.map((id) => domainOf.get(id))).size, 9, `seed ${SEED + 2}`)
    for (const n of [1, 4, 6, 9]) assert.deepEqual(ids(placer.place(cid, n)), ranking.slice(0, n))
  }
})

test('too few failure domains fail with InsufficientDomainsError, also after exclusions', () => {
  const map: ClusterMap = { epoch: 9, members: Array.from({ length: 8 }, (_, i) => member(`n${i}`, `rack-${i % 4}`)) }
  const [cid] = randomCids(1, SEED + 3) as [Uint8Array]
  assert.equal(place(cid, 4, map).length, 4)
  assert.throws(() => place(cid, 5, map), (err: unknown) => {
    assert.ok(err instanceof InsufficientDomainsError)
    assert.equal(err.name, 'InsufficientDomainsError')
    assert.equal(err.kind, 'failed-precondition')
    assert.equal(err.domainCount, 4)
    return true
  })
  assert.throws(() => place(cid, 4, map, { exclude: new Set(['n0', 'n4']) }), { name: 'InsufficientDomainsError' })
  assert.equal(place(cid, 4, map, { exclude: new Set(['n0', 'not-a-member']) }).length, 4)
  assert.deepEqual(rank(cid, map, { exclude: new Set(['n0', 'n4']) }).length, 3)
})

const badCalls: Array<[string, () => unknown, string]> = [
  ['a zero shard count', () => place(new Uint8Array([1]), 0, oneDomainEach([1, 1])), 'InvalidArgumentError'],
  ['a fractional shard count', () => place(new Uint8Array([1]), 1.5, oneDomainEach([1, 1])), 'InvalidArgumentError'],
  ['empty CID bytes', () => place(new Uint8Array(0), 1, oneDomainEach([1, 1])), 'InvalidArgumentError'],
  ['CID bytes that are not bytes', () => place('cid' as unknown as Uint8Array, 1, oneDomainEach([1, 1])), 'InvalidArgumentError'],
  ['a malformed map', () => place(new Uint8Array([1]), 1, { epoch: 1, members: [member('a', 'z', -1)] }), 'InvalidClusterMapError'],
  ['an empty map', () => place(new Uint8Array([1]), 1, { epoch: 1, members: [] }), 'InsufficientDomainsError'],
]
for (const [goal, call, name] of badCalls) {
  test(`place refuses ${goal} with ${name}`, () => {
    assert.throws(call, { name })
  })
}

test('placementsByEpoch lists each epoch newest first and skips epochs that could not place', () => {
  const old = oneDomainEach([1, 1, 1], 3)
  const mid = oneDomainEach([1, 1, 1, 1, 1, 1], 5)
  const now = oneDomainEach([1, 1, 1, 1, 1, 1, 2], 8)
  const [cid] = randomCids(1, SEED + 4) as [Uint8Array]
  const history = placementsByEpoch(cid, 4, [mid, old, now])
  assert.deepEqual(history.map((h) => h.epoch), [8, 5])
  assert.deepEqual(ids(history[1]?.members ?? []), ids(place(cid, 4, mid)))
  assert.throws(() => placementsByEpoch(cid, 4, [mid, { ...now, epoch: 5 }]), { name: 'InvalidArgumentError' })
})

test('members with weight 0 and excluded members are never chosen', () => {
  const map: ClusterMap = {
    epoch: 1,
    members: [...oneDomainEach([1, 1, 1, 1, 1, 1, 1]).members, { ...member('drained', 'zone-x'), weight: 0, state: 'draining' }],
  }
  const exclude = new Set(['node-2'])
  const placer = createPlacer(map)
  for (const cid of randomCids(3000, SEED + 5)) {
    const chosen = ids(placer.place(cid, 6, { exclude }))
    assert.ok(!chosen.includes('drained') && !chosen.includes('node-2'), `seed ${SEED + 5}`)
  }
})

/**
 * Exact probability that each member holds one of the first `shardCount`
 * slots, for one member per domain: slot i draws among the members not yet
 * chosen with probability proportional to weight (successive sampling), so a
 * dynamic program over the set chosen so far gives it exactly.
 */
function inclusionProbabilities(weights: readonly number[], shardCount: number): number[] {
  const total = weights.reduce((a, b) => a + b, 0)
  let layer = new Map<number, number>([[0, 1]])
  const inclusion = weights.map(() => 0)
  for (let slot = 0; slot < shardCount; slot++) {
    const nextLayer = new Map<number, number>()
    for (const [set, p] of layer) {
      let free = total
      weights.forEach((w, j) => (free -= set & (1 << j) ? w : 0))
      weights.forEach((w, j) => {
        if (set & (1 << j)) return
        const q = (p * w) / free
        inclusion[j] = (inclusion[j] as number) + q
        nextLayer.set(set | (1 << j), (nextLayer.get(set | (1 << j)) ?? 0) + q)
      })
    }
    layer = nextLayer
  }
  return inclusion
}

/**
 * Per-member counts are binomial (each chunk includes a member independently
 * of other chunks), so 4.5 standard deviations is the tolerance: a correct
 * hash fails it with probability about 1e-5 per member, a biased one (a weight
 * ignored, a poorly mixed hash) is off by far more at 100k chunks.
 */
function assertCountsMatch(counts: readonly number[], probabilities: readonly number[], trials: number, what: string): number {
  let worstRelative = 0
  counts.forEach((count, j) => {
    const p = probabilities[j] as number
    const expected = trials * p
    const sigma = Math.sqrt(trials * p * (1 - p))
    const relative = Math.abs(count - expected) / expected
    worstRelative = Math.max(worstRelative, relative)
    assert.ok(Math.abs(count - expected) <= 4.5 * sigma, `${what}: member ${j} holds ${count}, expected ${expected.toFixed(0)} ± ${(4.5 * sigma).toFixed(0)} (seed ${SEED})`)
  })
  return worstRelative
}

const BALANCE_WEIGHTS = [1, 1, 2, 2, 3, 3, 4, 4, 6, 6, 8, 8]

test('load follows weight: shard 0 exactly ∝ weight, all shards as successive sampling predicts', () => {
  const map = oneDomainEach(BALANCE_WEIGHTS)
  const placer = createPlacer(map)
  const index = new Map(map.members.map((m, j) => [m.id, j]))
  const primary = BALANCE_WEIGHTS.map(() => 0)
  const all = BALANCE_WEIGHTS.map(() => 0)
  for (const cid of randomCids(CHUNKS, SEED)) {
    placer.place(cid, SHARDS).forEach((m, slot) => {
      const j = index.get(m.id) as number
      if (slot === 0) primary[j] = (primary[j] as number) + 1
      all[j] = (all[j] as number) + 1
    })
  }
  const total = BALANCE_WEIGHTS.reduce((a, b) => a + b, 0)
  const primaryWorst = assertCountsMatch(primary, BALANCE_WEIGHTS.map((w) => w / total), CHUNKS, 'shard 0')
  const allWorst = assertCountsMatch(all, inclusionProbabilities(BALANCE_WEIGHTS, SHARDS), CHUNKS, 'all shards')
  // With 100k chunks every member's share should land within a few percent.
  assert.ok(primaryWorst < 0.06 && allWorst < 0.03, `worst relative error: shard 0 ${primaryWorst}, all ${allWorst}`)
})

interface Movement {
  /** Shards whose member changed to or from the changed member. */
  direct: number
  /** Shards that moved between two members that are in both maps. */
  collateral: number
  /** Chunks whose lowest changed slot did not involve the changed member. */
  firstChangeElsewhere: number
  /** Shards on the changed member (in whichever map has it). */
  onChanged: number
}

function movement(before: Placer, after: Placer, changed: string, cids: readonly Uint8Array[]): Movement {
  const result: Movement = { direct: 0, collateral: 0, firstChangeElsewhere: 0, onChanged: 0 }
  for (const cid of cids) {
    const a = ids(before.place(cid, SHARDS))
    const b = ids(after.place(cid, SHARDS))
    let first = true
    for (let slot = 0; slot < SHARDS; slot++) {
      if (a[slot] === changed || b[slot] === changed) result.onChanged++
      if (a[slot] === b[slot]) continue
      const direct = a[slot] === changed || b[slot] === changed
      if (direct) result.direct++
      else result.collateral++
      if (first && !direct) result.firstChangeElsewhere++
      first = false
    }
  }
  return result
}

test('a member joining takes its fair share, a leaving member gives up its own shards first, and collateral moves stay bounded', () => {
  const weights = [...BALANCE_WEIGHTS, 4]
  const small = createPlacer(oneDomainEach(BALANCE_WEIGHTS, 1))
  const large = createPlacer(oneDomainEach(weights, 2))
  const cids = randomCids(CHUNKS, SEED + 6)
  const join = movement(small, large, 'node-12', cids)
  // Join and leave are the same pair of maps seen from either side.
  const leave = movement(large, small, 'node-12', cids)
  assert.deepEqual(leave, join)
  // Exact: in every chunk the first shard that changes moves to (or off) the new member.
  assert.equal(join.firstChangeElsewhere, 0)
  // Every shard on the new member moved there, and it holds its fair share.
  assert.equal(join.direct, join.onChanged)
  const fair = (inclusionProbabilities(weights, SHARDS)[12] as number) * CHUNKS
  assert.ok(Math.abs(join.direct - fair) <= 4.5 * Math.sqrt(fair), `new member holds ${join.direct}, fair share ${fair.toFixed(0)} (seed ${SEED + 6})`)
  // Bounded, not zero: a shard that moves frees or takes a domain that a later
  // slot wanted (docs/adr/0004 explains why no index-stable rule avoids this).
  // This shape measures 0.36 collateral moves per direct move; a change of
  // rule or hash that makes movement worse trips the bound.
  assert.ok(join.collateral < 0.42 * join.direct, `collateral ${join.collateral} vs direct ${join.direct} (seed ${SEED + 6})`)
})

test('shard 0 moves only to or from the changed member, for joins within an existing domain too', () => {
  const before: ClusterMap = { epoch: 1, members: Array.from({ length: 12 }, (_, i) => member(`n${i}`, `rack-${i % 8}`)) }
  const after: ClusterMap = { epoch: 2, members: [...before.members, member('n12', 'rack-4')] }
  const a = createPlacer(before)
  const b = createPlacer(after)
  let moved = 0
  for (const cid of randomCids(20_000, SEED + 7)) {
    const x = a.place(cid, 1)[0]?.id
    const y = b.place(cid, 1)[0]?.id
    if (x !== y) {
      moved++
      assert.equal(y, 'n12', `seed ${SEED + 7}`)
    }
  }
  // Shard 0 is a plain weighted draw: the new member wins 1/13 of them.
  assert.ok(Math.abs(moved - 20_000 / 13) <= 4.5 * Math.sqrt(20_000 / 13), `moved ${moved}`)
})
