import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ByteLru } from './cache.js'
import { ByteBudget } from './byte-budget.js'

test('the LRU stays within its byte bound and evicts the least recently used first', () => {
  const lru = new ByteLru<Uint8Array>({ maxBytes: 100, sizeOf: (b) => b.byteLength })
  lru.set('a', new Uint8Array(40))
  lru.set('b', new Uint8Array(40))
  assert.ok(lru.get('a') !== undefined)
  lru.set('c', new Uint8Array(40))
  assert.equal(lru.has('b'), false, 'b was least recently used')
  assert.ok(lru.has('a') && lru.has('c'))
  assert.equal(lru.sizeBytes, 80)
  lru.set('huge', new Uint8Array(101))
  assert.equal(lru.has('huge'), false, 'a value larger than the cache is not kept')
  assert.equal(lru.sizeBytes, 80)
  lru.set('a', new Uint8Array(10))
  assert.equal(lru.sizeBytes, 50, 'replacing a value recounts its bytes')
  assert.throws(() => new ByteLru({ maxBytes: -1, sizeOf: () => 0 }), { name: 'InvalidArgumentError' })
})

test('the byte budget admits in arrival order and never exceeds its bound', async () => {
  const budget = new ByteBudget(100)
  const first = await budget.acquire(70)
  const order: string[] = []
  const big = budget.acquire(60).then((n) => (order.push('big'), n))
  const small = budget.acquire(10).then((n) => (order.push('small'), n))
  await Promise.resolve()
  assert.deepEqual(order, [], 'the small request waits behind the big one (FIFO)')
  budget.release(first)
  const [b, s] = await Promise.all([big, small])
  assert.deepEqual(order, ['big', 'small'])
  assert.equal(budget.usedBytes, 70)
  budget.release(b)
  budget.release(s)
  assert.equal(await budget.acquire(500), 100, 'an oversized request is clamped and runs alone')
  const waiting = budget.acquire(1)
  budget.rejectWaiters()
  await assert.rejects(waiting, { name: 'ShuttingDownError' })
})
