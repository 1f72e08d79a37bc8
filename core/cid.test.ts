import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { chunkCid, cidFromBytes, cidFromString, cidHash, cidToBytes, loadChunkHashers, verifyChunk, BLAKE3_CODE, RAW_CODEC } from './cid.js'

const hello = new TextEncoder().encode('hello world')

// Runs first (tests run in definition order), before any test loads blake3.
it('blake3 before loadChunkHashers() fails with HasherNotLoadedError, not a wrong CID', () => {
  assert.throws(() => chunkCid(hello, 'blake3'), { name: 'HasherNotLoadedError' })
})

describe('chunk CIDs', () => {
  before(async () => {
    await loadChunkHashers()
  })

  it('sha2-256 CID equals what multiformats (IPFS tooling) computes for raw blocks', async () => {
    for (const bytes of [new Uint8Array(0), hello, new Uint8Array(65536).fill(0xa5)]) {
      const expected = CID.createV1(raw.code, await sha256.digest(bytes))
      assert.equal(chunkCid(bytes).toString(), expected.toString())
    }
    // `ipfs add --raw-leaves --cid-version 1` of "hello world" (no newline).
    assert.equal(chunkCid(hello).toString(), 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e')
  })

  it('blake3 matches the official BLAKE3 test vectors', () => {
    const empty = chunkCid(new Uint8Array(0), 'blake3')
    assert.equal(empty.multihash.code, BLAKE3_CODE)
    assert.equal(empty.code, RAW_CODEC)
    assert.equal(Buffer.from(empty.multihash.digest).toString('hex'), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
    const abc = chunkCid(new TextEncoder().encode('abc'), 'blake3')
    assert.equal(Buffer.from(abc.multihash.digest).toString('hex'), '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85')
    assert.equal(cidHash(abc), 'blake3')
  })

  it('verifyChunk accepts the right bytes and rejects tampered bytes with ChunkIntegrityError, for both hashes', () => {
    for (const hash of ['sha2-256', 'blake3'] as const) {
      const bytes = Uint8Array.from({ length: 4096 }, (_, i) => i * 13)
      const cid = chunkCid(bytes, hash)
      verifyChunk(cid, bytes)
      const tampered = Uint8Array.from(bytes)
      tampered[1234] = (tampered[1234] as number) ^ 1
      assert.throws(() => verifyChunk(cid, tampered), { name: 'ChunkIntegrityError' }, hash)
      assert.throws(() => verifyChunk(cid, bytes.subarray(1)), { name: 'ChunkIntegrityError' }, hash)
    }
  })

  it('round-trips CIDs through bytes and strings, and rejects garbage with InvalidArgumentError', () => {
    const cid = chunkCid(hello, 'blake3')
    assert.ok(cidFromBytes(cidToBytes(cid)).equals(cid))
    assert.ok(cidFromString(cid.toString()).equals(cid))
    assert.throws(() => cidFromBytes(new Uint8Array([1, 2, 3])), { name: 'InvalidArgumentError' })
    assert.throws(() => cidFromBytes(cidToBytes(cid).subarray(0, 10)), { name: 'InvalidArgumentError' })
    assert.throws(() => cidFromString('not-a-cid'), { name: 'InvalidArgumentError' })
    assert.throws(() => chunkCid(hello, 'md5' as 'blake3'), { name: 'InvalidArgumentError' })
  })
})
