import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Slots } from './slots.js'

test('slots bound concurrency, hand over in order, refuse past the wait queue and honour aborts', async () => {
  const slots = new Slots(2, 1)
  const never = new AbortController().signal
  const r1 = await slots.acquire(never)
  const r2 = await slots.acquire(never)
  assert.equal(slots.inUse(), 2)
  let third = false
  const waiting = slots.acquire(never).then((r) => {
    third = true
    return r
  })
  await assert.rejects(slots.acquire(never), { name: 'ResourceExhaustedError' }, 'wait queue full')
  const aborted = new AbortController()
  aborted.abort()
  await assert.rejects(slots.acquire(aborted.signal), { name: 'ResourceExhaustedError' }, 'still full, checked first')
  r1()
  r1()
  const r3 = await waiting
  assert.equal(third, true)
  assert.equal(slots.inUse(), 2, 'the slot passed to the waiter')
  const controller = new AbortController()
  const cancelled = slots.acquire(controller.signal)
  controller.abort()
  await assert.rejects(cancelled, { name: 'MeshUnavailableError' })
  r2()
  r3()
  assert.equal(slots.inUse(), 0)
})
