import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { identityPath, loadOrCreatePeerIdentity } from './identity.js'

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-identity-'))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

test('the identity is created once with mode 0600 and the same peer id comes back on every load', async () => {
  await withDir(async (dir) => {
    const first = await loadOrCreatePeerIdentity(dir)
    assert.equal(first.created, true)
    assert.match(first.peerId, /^12D3KooW/, 'an Ed25519 peer id')
    assert.equal((await stat(identityPath(dir))).mode & 0o777, 0o600)
    const bytes = await readFile(identityPath(dir))
    const again = await loadOrCreatePeerIdentity(dir)
    assert.equal(again.created, false)
    assert.equal(again.peerId, first.peerId)
    assert.ok(bytes.equals(await readFile(identityPath(dir))), 'loading never rewrites the key')
  })
})

test('concurrent first starts agree on one identity', async () => {
  await withDir(async (dir) => {
    const all = await Promise.all(Array.from({ length: 5 }, () => loadOrCreatePeerIdentity(dir)))
    assert.equal(new Set(all.map((i) => i.peerId)).size, 1)
    assert.equal(all.filter((i) => i.created).length, 1, 'exactly one call created the key')
  })
})

const corruptions: Array<[string, Uint8Array]> = [
  ['empty file', new Uint8Array(0)],
  ['garbage bytes', Buffer.from('not a key at all, just text\n')],
  ['truncated key', Buffer.from([0x08, 0x01, 0x12, 0x40, 1, 2, 3])],
]

for (const [what, bytes] of corruptions) {
  test(`a corrupt identity file (${what}) is a PeerIdentityError and is left as it was`, async () => {
    await withDir(async (dir) => {
      await mkdir(join(dir, 'mesh'))
      await writeFile(identityPath(dir), bytes)
      await assert.rejects(loadOrCreatePeerIdentity(dir), { name: 'PeerIdentityError' })
      assert.ok((await readFile(identityPath(dir))).equals(Buffer.from(bytes)), 'never silently regenerated')
    })
  })
}

test('a key file that lost its last byte is a PeerIdentityError', async () => {
  await withDir(async (dir) => {
    await loadOrCreatePeerIdentity(dir)
    const bytes = await readFile(identityPath(dir))
    await writeFile(identityPath(dir), bytes.subarray(0, bytes.length - 1))
    await assert.rejects(loadOrCreatePeerIdentity(dir), { name: 'PeerIdentityError' })
  })
})

test('an unreadable identity path is a PeerIdentityError, not a new key', async () => {
  await withDir(async (dir) => {
    await mkdir(identityPath(dir), { recursive: true })
    await assert.rejects(loadOrCreatePeerIdentity(dir), { name: 'PeerIdentityError' })
    if (process.getuid?.() !== 0) {
      await rm(identityPath(dir), { recursive: true })
      await loadOrCreatePeerIdentity(dir)
      await chmod(identityPath(dir), 0o000)
      await assert.rejects(loadOrCreatePeerIdentity(dir), { name: 'PeerIdentityError' })
    }
  })
})
