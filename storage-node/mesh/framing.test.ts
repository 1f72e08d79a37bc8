import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixtureCid } from '../fixtures.js'
import { HAS_COUNT_MAX, decodeAddresses, decodeError, decodeHeader, encodeAddresses, encodeError, encodeHeader } from './codec.js'
import { FrameReader, coalesce, frame } from './framing.js'
import { ShardNotFoundError } from '../shard-store.js'
import { ResourceExhaustedError } from '../../core/errors.js'

async function* chunks(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p
}

/** Splits `bytes` into pieces of pseudo-random sizes from a fixed seed. */
function split(bytes: Uint8Array, seed: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let x = seed
  for (let pos = 0; pos < bytes.length; ) {
    x = (x * 1103515245 + 12345) >>> 0
    const n = 1 + (x % 7)
    out.push(bytes.subarray(pos, pos + n))
    pos += n
  }
  return out
}

test('frames come back whole however the stream splits them', async () => {
  const bodies = [Buffer.from('a'), Buffer.alloc(300, 7), Buffer.from('hello')]
  const wire = Buffer.concat(bodies.flatMap((b) => frame(b)))
  for (const seed of [1, 2, 3, 42]) {
    const reader = new FrameReader(chunks(split(wire, seed)), 1024)
    for (const body of bodies) assert.ok(Buffer.from((await reader.next())!).equals(body), `seed ${seed}`)
    assert.equal(await reader.next(), undefined, `clean end, seed ${seed}`)
  }
})

test('a frame over the limit is refused from its prefix; truncated and empty frames are protocol errors', async () => {
  const over = new FrameReader(chunks(frame(Buffer.alloc(11))), 10)
  await assert.rejects(over.next(), { name: 'MeshMessageTooLargeError' })
  const truncated = new FrameReader(chunks([frame(Buffer.alloc(10))[0]!, Buffer.alloc(3)]), 100)
  await assert.rejects(truncated.next(), { name: 'MeshProtocolError' })
  const halfPrefix = new FrameReader(chunks([Buffer.from([0, 0])]), 100)
  await assert.rejects(halfPrefix.next(), { name: 'MeshProtocolError' })
  const empty = new FrameReader(chunks([Buffer.alloc(4)]), 100)
  await assert.rejects(empty.next(), { name: 'MeshProtocolError' })
  const trailing = new FrameReader(chunks([...frame(Buffer.from('x')), Buffer.from('y')]), 100)
  await trailing.next()
  await assert.rejects(trailing.expectEnd(), { name: 'MeshProtocolError' })
})

test('coalesce joins small chunks, passes large ones through and loses no byte', async () => {
  const parts = [Buffer.alloc(10, 1), Buffer.alloc(20, 2), Buffer.alloc(100, 3), Buffer.alloc(5, 4)]
  let counted = 0
  const out: Uint8Array[] = []
  for await (const c of coalesce(parts, (n) => (counted += n), 50)) out.push(c)
  assert.deepEqual(out.map((c) => c.length), [30, 100, 5])
  assert.ok(Buffer.concat(out).equals(Buffer.concat(parts)))
  assert.equal(counted, 135)
})

test('request headers and address lists round-trip; bad ones are protocol errors', () => {
  assert.deepEqual(decodeHeader(encodeHeader({ op: 'get', count: 3 })), { op: 'get', count: 3 })
  const bad: Array<[string, Uint8Array]> = [
    ['short', Buffer.from([1, 1, 0])],
    ['version', Buffer.from([2, 1, 0, 0, 0, 1])],
    ['op', Buffer.from([1, 0, 0, 0, 0, 1])],
    ['zero count', Buffer.from([1, 1, 0, 0, 0, 0])],
    ['count over the limit', encodeHeader({ op: 'has', count: HAS_COUNT_MAX + 1 })],
    ['get count over the transfer limit', encodeHeader({ op: 'get', count: 257 })],
  ]
  for (const [what, bytes] of bad) assert.throws(() => decodeHeader(bytes), { name: 'MeshProtocolError' }, what)
  const addresses = [{ chunkCid: fixtureCid('a'), index: 0 }, { chunkCid: fixtureCid('b'), index: 254 }]
  assert.deepEqual(decodeAddresses(encodeAddresses(addresses), 2), addresses)
  const encoded = encodeAddresses(addresses)
  assert.throws(() => decodeAddresses(encoded, 3), { name: 'MeshProtocolError' }, 'count mismatch')
  assert.throws(() => decodeAddresses(encoded.subarray(0, encoded.length - 1), 2), { name: 'MeshProtocolError' }, 'truncated')
  const garbage = Buffer.from([0, 3, 0xff, 0xff, 0xff])
  assert.throws(() => decodeAddresses(garbage, 1), { name: 'MeshProtocolError' }, 'not a CID')
})

test('errors cross the wire as their own class when known, else as RemoteError with the kind', () => {
  assert.equal(decodeError(encodeError(2, new ShardNotFoundError('gone'))).name, 'ShardNotFoundError')
  assert.equal(decodeError(encodeError(2, new ResourceExhaustedError('busy'))).name, 'ResourceExhaustedError')
  const internal = decodeError(encodeError(2, new TypeError('secret detail')))
  assert.equal(internal.name, 'RemoteError')
  assert.equal(internal.kind, 'internal')
  assert.doesNotMatch(internal.message, /secret/, 'internal details stay on the node')
  assert.throws(() => decodeError(Buffer.from([2, 0x7b])), { name: 'MeshProtocolError' })
  assert.throws(() => decodeError(Buffer.from([2, ...Buffer.from('{"name":"X","kind":"nope","message":""}')])), { name: 'MeshProtocolError' })
})
