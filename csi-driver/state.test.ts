import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeStateStore, type VolumeState } from './state.js'

async function withStore(fn: (store: NodeStateStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-csi-state-'))
  try {
    await fn(new NodeStateStore(dir))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const base: VolumeState = {
  version: 1,
  volumeId: 'vol-1',
  phase: 'staged',
  stagingPath: '/var/lib/kubelet/staging/vol-1',
  access: { type: 'mount', fsType: 'ext4', mountFlags: ['noatime'] },
  readOnly: false,
  attachMode: 'fuse',
  engine: { pid: 42, socketPath: '/state/engine.sock', adminAddress: '127.0.0.1:9000' },
  device: '/dev/loop7',
}

describe('node state files', () => {
  it('keep the access mode and each publish across a write and a read (what a restarted plugin compares against)', () =>
    withStore(async (store) => {
      const state: VolumeState = {
        ...base,
        accessMode: 'SINGLE_NODE_WRITER',
        publishes: { '/pods/a/mnt': { access: base.access, accessMode: 'SINGLE_NODE_WRITER', readOnly: true } },
      }
      await store.write(state)
      assert.deepEqual(await store.read('vol-1'), state)
    }))

  it('read state written before access modes and publishes were recorded', () =>
    withStore(async (store) => {
      const dir = store.volumeDir('vol-1')
      await mkdir(dir, { recursive: true })
      await writeFile(join(dir, 'state.json'), JSON.stringify(base))
      const read = await store.read('vol-1')
      assert.deepEqual(read, base)
      assert.equal(read?.accessMode, undefined)
      assert.equal(read?.publishes, undefined)
    }))

  it('treat a file with a malformed publish record as absent rather than trusting it', () =>
    withStore(async (store) => {
      const dir = store.volumeDir('vol-1')
      await mkdir(dir, { recursive: true })
      await writeFile(join(dir, 'state.json'), JSON.stringify({ ...base, publishes: { '/pods/a/mnt': { access: base.access, readOnly: 'yes' } } }))
      assert.equal(await store.read('vol-1'), undefined)
    }))
})
