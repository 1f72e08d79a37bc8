/**
 * The node's persistent libp2p identity: one Ed25519 key in
 * `<dataDir>/mesh/identity.key` (the key's libp2p protobuf encoding, mode 0600).
 * The peer id derived from it is published in the cluster map, and peers refuse
 * anyone whose key does not match, so the key is created once and then reused
 * for the node's whole life. A file that is there but unreadable or corrupt is
 * an error for the operator, never a reason to mint a new key.
 */
import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { PeerIdentityError } from './errors.js'

export interface PeerIdentity {
  /** The peer id, base58btc (`12D3Koo…`): what the cluster map's `peerId` holds. */
  peerId: string
  privateKey: PrivateKey
  /** The file the key lives in. */
  path: string
  /** True when this call created the key (first start on this data dir). */
  created: boolean
}

/** Where the identity of the node with data directory `dataDir` lives. */
export function identityPath(dataDir: string): string {
  return join(dataDir, 'mesh', 'identity.key')
}

/**
 * Loads the identity from `dataDir`, or creates it when the file does not exist.
 * Safe against two processes racing to create it: exactly one key wins and both load it.
 * @throws PeerIdentityError when the file exists but cannot be read or is not an Ed25519 key
 */
export async function loadOrCreatePeerIdentity(dataDir: string): Promise<PeerIdentity> {
  const path = identityPath(dataDir)
  const existing = await readIdentity(path)
  if (existing !== undefined) return existing
  const key = await generateKeyPair('Ed25519')
  const won = await createOnce(path, privateKeyToProtobuf(key))
  if (!won) {
    const raced = await readIdentity(path)
    if (raced === undefined) throw new PeerIdentityError(`identity file ${path} vanished while it was being created`)
    return raced
  }
  return { peerId: peerIdFromPrivateKey(key).toString(), privateKey: key, path, created: true }
}

async function readIdentity(path: string): Promise<PeerIdentity | undefined> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new PeerIdentityError(`cannot read the mesh identity file ${path}: ${(err as Error).message}`, { cause: err })
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new PeerIdentityError(`the mesh identity file ${path} is corrupt (${bytes.length} bytes do not parse as a key); restore it or remove the node from the cluster map before deleting it`, { cause: err })
  }
  if (key.type !== 'Ed25519') throw new PeerIdentityError(`the mesh identity file ${path} holds a ${key.type} key, expected Ed25519`)
  return { peerId: peerIdFromPrivateKey(key).toString(), privateKey: key, path, created: false }
}

/**
 * Writes `bytes` to `path` only if no file is there: a fully written, fsynced
 * temporary file is hard-linked into place (link fails if the target exists), so
 * readers never see a half-written key and a crash leaves either no key or a whole one.
 * @returns false when another process created the file first
 */
async function createOnce(path: string, bytes: Uint8Array): Promise<boolean> {
  const dir = join(path, '..')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const file = await open(tmp, 'wx', 0o600)
  try {
    await file.writeFile(bytes)
    await file.sync()
  } finally {
    await file.close()
  }
  let won = true
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new PeerIdentityError(`cannot create the mesh identity file ${path}`, { cause: err })
    won = false
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
  if (won) await syncDir(dir)
  return won
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
