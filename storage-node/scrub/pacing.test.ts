import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TokenBucket } from './pacing.js'
import { fakeClock } from '../repair/test-support.js'

test('bytes taken never run ahead of burst + rate × elapsed time, whatever the request sizes', async () => {
  const seed = 7
  let x = seed
  const clock = fakeClock()
  const bucket = new TokenBucket({ bytesPerSecond: 1_000_000, burstBytes: 50_000 }, clock)
  let taken = 0
  for (let i = 0; i < 500; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31
    const bytes = 1 + (x % 300_000)
    await bucket.take(bytes)
    taken += bytes
    assert.ok(taken <= 50_000 + clock.now * 1000 + 1e-6, `seed ${seed}: ${taken} bytes by ${clock.now} ms`)
    if (i % 50 === 0) clock.now += 10 // idle gaps refill at most the burst
  }
  assert.ok(clock.slept > 0, 'the bucket made the caller wait')
  assert.ok(taken / clock.now / 1000 > 0.9, 'and did not slow it far below the rate')
})

test('setRate applies from then on, and an unpaced bucket never sleeps', async () => {
  const clock = fakeClock()
  const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 1 }, clock)
  await bucket.take(1001)
  assert.equal(Math.round(clock.now), 1000)
  bucket.setRate(2000)
  await bucket.take(2000)
  assert.equal(Math.round(clock.now), 2000)
  const unpaced = new TokenBucket({ bytesPerSecond: Infinity }, clock)
  await unpaced.take(1e12)
  assert.equal(Math.round(clock.now), 2000)
  assert.equal(unpaced.takenBytes, 1e12)
})

test('a bad rate is refused with a typed error', () => {
  for (const rate of [0, -1, Number.NaN]) assert.throws(() => new TokenBucket({ bytesPerSecond: rate }), { name: 'InvalidArgumentError' })
})

test('an aborted signal ends a wait with PassAbortedError', async () => {
  const bucket = new TokenBucket({ bytesPerSecond: 1, burstBytes: 1 })
  const controller = new AbortController()
  const waiting = bucket.take(1_000_000, controller.signal)
  controller.abort()
  await assert.rejects(waiting, { name: 'PassAbortedError' })
})
