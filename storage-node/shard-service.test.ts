import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { credentials, Metadata, status as Status, type ServiceError } from '@grpc/grpc-js'
import { Registry } from 'prom-client'
import { silentLogger } from '../core/logger.js'
import { encodeShard, type Shard } from '../core/shard.js'
import { StorageNode } from './daemon.js'
import { ShardClient } from './shard-client.js'
import { loadShardService } from './proto.js'
import { fixtureCid, fixtureShard, loopbackNodeInit } from './fixtures.js'

let dir: string
let node: StorageNode
let client: ShardClient
const stored: Shard[] = Array.from({ length: 12 }, (_, i) => fixtureShard(100 + i, i % 6, 2000))

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-svc-'))
  node = new StorageNode(
    loopbackNodeInit(dir, { segmentSizeBytes: 1024 * 1024, maxBatchShards: 16, maxBatchBytes: 64 * 1024, maxShardBytes: 16 * 1024, shutdownGraceMs: 2000 }),
    { logger: silentLogger(), registry: new Registry() },
  )
  await node.start()
  client = new ShardClient({ address: node.grpcAddress() })
  await client.putShards(stored)
})

after(async () => {
  client.close()
  await node.stop()
  await rm(dir, { recursive: true, force: true })
})

/** Every shard stored in `before` still reads back byte for byte. */
async function assertStoredIntact(): Promise<void> {
  const results = await client.getShards(stored.map((s) => s.header))
  results.forEach((r, i) => {
    assert.ok(r.ok, `shard ${i} readable`)
    assert.ok(Buffer.from(r.shard.bytes).equals(Buffer.from(stored[i]!.bytes)))
  })
  assert.equal((await client.stats()).shardCount, stored.length)
}

/** Calls a unary method with a raw request object, bypassing ShardClient's conversions. */
function rawCall(method: string, request: unknown): Promise<ServiceError | null> {
  const { Client } = loadShardService()
  const raw = new Client(node.grpcAddress(), credentials.createInsecure())
  return new Promise((resolve) => {
    ;(raw as unknown as Record<string, (r: unknown, m: Metadata, cb: (e: ServiceError | null) => void) => void>)[method]!.call(raw, request, new Metadata(), (err) => {
      raw.close()
      resolve(err)
    })
  })
}

test('shards put over gRPC read back whole, in batches, and as payload ranges', async () => {
  await assertStoredIntact()
  const one = stored[3]!
  const whole = await client.getShard(one.header)
  assert.ok(Buffer.from(whole.payload).equals(Buffer.from(one.payload)))
  const range = await client.getPayloadRange(one.header, { offsetBytes: 100, lengthBytes: 50 })
  assert.ok(Buffer.from(range).equals(Buffer.from(one.payload.subarray(100, 150))))
  assert.deepEqual(await client.hasShards([one.header, fixtureShard(999).header]), [true, false])
  const page = await client.listShards({ pageSize: 5 })
  assert.equal(page.shards.length, 5)
  assert.ok(page.nextPageToken !== undefined)
})

test('a re-put over gRPC is idempotent', async () => {
  assert.deepEqual(await client.putShards(stored.slice(0, 3)), { writtenCount: 0, existingCount: 3 })
})

test('an unknown shard is NOT_FOUND, and in a batch only that entry fails', async () => {
  const unknown = fixtureShard(555, 1)
  await assert.rejects(client.getShard(unknown.header), { name: 'ShardNotFoundError' })
  const results = await client.getShards([stored[0]!.header, unknown.header])
  assert.equal(results[0]?.ok, true)
  assert.equal(results[1]?.ok === false && results[1].error.name, 'ShardNotFoundError')
  const err = await rawCall('getShard', { address: { chunkCid: Buffer.from(unknown.header.chunkCid), index: 1 } })
  assert.equal(err?.code, Status.NOT_FOUND)
})

test('a shard whose payload length disagrees with its header is INVALID_ARGUMENT', async () => {
  const good = fixtureShard(600, 0, 1000)
  const stream = client.openPutStream()
  const truncated = good.bytes.subarray(0, good.bytes.length - 1)
  await assert.rejects(stream.putRaw([truncated]), (err: Error & { kind?: string; cause?: ServiceError }) => {
    assert.equal(err.name, 'ShardFormatError')
    assert.equal(err.cause?.code, Status.INVALID_ARGUMENT)
    return true
  })
  stream.close()
  const padded = client.openPutStream()
  await assert.rejects(padded.putRaw([Uint8Array.from([...good.bytes, 0])]), { name: 'ShardFormatError' })
  padded.close()
  assert.deepEqual(await client.hasShards([good.header]), [false])
  await assertStoredIntact()
})

test('a shard with a bad CRC in a put is INVALID_ARGUMENT and nothing of its batch is stored', async () => {
  const good = fixtureShard(601, 0, 1000)
  const bad = Uint8Array.from(fixtureShard(602, 0, 1000).bytes)
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 1
  const stream = client.openPutStream()
  await assert.rejects(stream.putRaw([good.bytes, bad]), { name: 'ShardFormatError' })
  stream.close()
  assert.deepEqual(await client.hasShards([good.header]), [false])
  await assertStoredIntact()
})

test('oversize batches and shards are refused with INVALID_ARGUMENT, over-limit address lists too', async () => {
  const tooMany = Array.from({ length: 17 }, (_, i) => fixtureShard(700 + i, 0, 16))
  await assert.rejects(client.putShards(tooMany), (err: Error & { cause?: ServiceError }) => {
    assert.equal(err.name, 'ShardLimitError')
    assert.equal(err.cause?.code, Status.INVALID_ARGUMENT)
    return true
  })
  const tooBig = Array.from({ length: 5 }, (_, i) => fixtureShard(720 + i, 0, 15000))
  await assert.rejects(client.putShards(tooBig), { name: 'ShardLimitError' })
  await assert.rejects(client.putShards([fixtureShard(730, 0, 20000)]), { name: 'ShardLimitError' })
  await assert.rejects(client.hasShards(tooMany.map((s) => s.header)), { name: 'ShardLimitError' })
  await assert.rejects(client.getShards(tooMany.map((s) => s.header)), { name: 'ShardLimitError' })
  assert.deepEqual(await client.hasShards(tooBig.slice(0, 3).map((s) => s.header)), [false, false, false])
  await assertStoredIntact()
})

const malformed: Array<{ name: string; method: string; request: unknown }> = [
  { name: 'GetShard without an address', method: 'getShard', request: {} },
  { name: 'GetShard with an empty CID', method: 'getShard', request: { address: { chunkCid: Buffer.alloc(0), index: 0 } } },
  { name: 'GetShard with CID garbage', method: 'getShard', request: { address: { chunkCid: Buffer.from([9, 9, 9]), index: 0 } } },
  { name: 'GetShard with index 255', method: 'getShard', request: { address: { chunkCid: Buffer.from(fixtureCid('x')), index: 255 } } },
  {
    name: 'GetShard with a zero-length range',
    method: 'getShard',
    request: { address: { chunkCid: Buffer.from(stored[0]!.header.chunkCid), index: stored[0]!.header.index }, payloadRange: { offset: 0, length: 0 } },
  },
  {
    name: 'GetShard with a range past the payload',
    method: 'getShard',
    request: { address: { chunkCid: Buffer.from(stored[0]!.header.chunkCid), index: stored[0]!.header.index }, payloadRange: { offset: 1990, length: 11 } },
  },
  { name: 'HasShards with an empty address', method: 'hasShards', request: { addresses: [{}] } },
  { name: 'DeleteShards with a bad CID', method: 'deleteShards', request: { addresses: [{ chunkCid: Buffer.from([1]), index: 0 }] } },
  { name: 'ListShards with a forged page token', method: 'listShards', request: { pageToken: 'not-a-token' } },
]

for (const c of malformed) {
  test(`${c.name} is INVALID_ARGUMENT and leaves stored data intact`, async () => {
    const err = await rawCall(c.method, c.request)
    assert.equal(err?.code, Status.INVALID_ARGUMENT, `got ${err?.code} ${err?.details}`)
    await assertStoredIntact()
  })
}

test('deleting over gRPC is idempotent and honours the last-put cutoff', async () => {
  const extra = [fixtureShard(800, 0), fixtureShard(801, 0)]
  await client.putShards(extra)
  assert.equal(await client.deleteShards(extra.map((s) => s.header), { lastPutBeforeUnixMs: 1 }), 0)
  assert.equal(await client.deleteShards(extra.map((s) => s.header)), 2)
  assert.equal(await client.deleteShards(extra.map((s) => s.header)), 0)
  await assertStoredIntact()
})

test('a stream of put batches is acknowledged batch by batch', async () => {
  const stream = client.openPutStream()
  const batches = Array.from({ length: 10 }, (_, b) => Array.from({ length: 4 }, (_, i) => encodeShard({ chunkCid: fixtureCid(`s-${b}-${i}`), k: 1, m: 0, index: 0, chunkLengthBytes: 100, payload: new Uint8Array(100).fill(b) })))
  const acks = await Promise.all(batches.map((b) => stream.put(b)))
  stream.close()
  assert.deepEqual(acks, batches.map(() => ({ writtenCount: 4, existingCount: 0 })))
  for (const b of batches) await client.deleteShards(b.map((s) => s.header))
})
