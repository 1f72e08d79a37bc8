import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AddressLocations } from './address-locations.js'
import { xorshift32 } from '../core/seeded-random.js'

/** The reference: every (hash, loc) pair held, as "hash:loc" strings. */
function held(reference: Set<string>, hash: number): number[] {
  return [...reference]
    .filter((k) => Number(k.split(':')[0]) === hash)
    .map((k) => Number(k.split(':')[1]))
    .sort((a, b) => a - b)
}

test('the address map agrees with a reference set through adds, deletes and moves, with colliding hashes, wrap-around and growth', () => {
  const seed = 0xad0c
  const next = xorshift32(seed)
  const map = new AddressLocations()
  const reference = new Set<string>()
  // Few distinct hashes, many sharing a home slot (low bits) and some near the table's end, so
  // probe runs collide, wrap past the last slot, and deletes must shift later entries back.
  const hashes = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? 1023 : i % 3 === 1 ? -1 : 0) + (next() & 0xffff) * 4096)
  const pairs: Array<[number, number]> = []
  for (let step = 0; step < 40_000; step++) {
    const op = next() % 10
    if (op < 6 || pairs.length === 0) {
      const hash = hashes[next() % hashes.length] as number
      const loc = 2 ** 32 + (next() % 5000)
      const key = `${hash}:${loc}`
      assert.equal(map.add(hash, loc), !reference.has(key), `seed ${seed} step ${step}: add`)
      if (!reference.has(key)) pairs.push([hash, loc])
      reference.add(key)
    } else {
      const at = next() % pairs.length
      const [hash, loc] = pairs[at] as [number, number]
      pairs[at] = pairs[pairs.length - 1] as [number, number]
      pairs.pop()
      reference.delete(`${hash}:${loc}`)
      if (op < 8) {
        assert.equal(map.delete(hash, loc), true, `seed ${seed} step ${step}: delete`)
      } else {
        // A move to a location not held under this hash yet; the pair reappears under the new location.
        let to = loc + 7919
        while (reference.has(`${hash}:${to}`)) to += 7919
        assert.equal(map.move(hash, loc, to), true, `seed ${seed} step ${step}: move`)
        reference.add(`${hash}:${to}`)
        pairs.push([hash, to])
      }
    }
    if (step % 997 === 0) {
      for (const hash of hashes) assert.deepEqual([...map.locations(hash)].sort((a, b) => a - b), held(reference, hash), `seed ${seed} step ${step}: hash ${hash}`)
    }
  }
  assert.equal(map.size, reference.size)
  for (const hash of hashes) {
    assert.deepEqual([...map.locations(hash)].sort((a, b) => a - b), held(reference, hash), `seed ${seed}: hash ${hash}`)
    assert.equal(map.has(hash), held(reference, hash).length > 0)
  }
  assert.equal(map.delete(12345, 2 ** 32), false, 'deleting a pair never held')
  assert.equal(map.move(12345, 2 ** 32, 2 ** 33), false)
})

test('the address map grows past its first table and keeps every entry; it refuses a location that could mark an empty slot', () => {
  const map = new AddressLocations(10)
  const start = map.sizeBytes
  for (let i = 0; i < 100_000; i++) map.add(i * 2654435761, 2 ** 32 + i)
  assert.equal(map.size, 100_000)
  assert.ok(map.sizeBytes > start)
  assert.ok(map.sizeBytes <= 100_000 * 12 * 4, `${map.sizeBytes} bytes for 100k entries`)
  for (let i = 0; i < 100_000; i += 7) assert.deepEqual(map.locations((i * 2654435761) | 0), [2 ** 32 + i])
  assert.equal(map.has(-5), false)
  assert.throws(() => map.add(1, 0), RangeError)
  assert.throws(() => map.add(1, 1.5), RangeError)
  assert.throws(() => map.move((7 * 2654435761) | 0, 2 ** 32 + 7, -1), RangeError)
})
