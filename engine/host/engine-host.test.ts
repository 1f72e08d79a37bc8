/**
 * EngineHost and its admin API over a real Local control plane (in memory). The
 * attached volumes are in-memory test volumes: these tests are about the host's
 * lifecycle and ordering (attach once, detach on stop, checkpoint before snapshot),
 * not about storing data, which the volume engine's own tests and e2e/ cover.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { HealthServer } from '../../core/health-server.js'
import { LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import type { ControlPlane } from '../../control-plane/types.js'
import { MemoryBackend } from '../nbd/index.js'
import { EngineHost } from './engine-host.js'
import { mountAdminApi } from './admin-api.js'
import { AdminClient } from './admin-client.js'
import { AdminApiError, type HostedVolume } from './types.js'

const MiB = 1024 * 1024

/** A volume whose checkpoint writes a new head (a CID of a counter) through the real control plane. */
class TestVolume implements HostedVolume {
  readonly backend: MemoryBackend
  checkpoints = 0
  detaches = 0
  constructor(
    readonly name: string,
    private readonly cp: ControlPlane,
    private readonly epoch: number,
  ) {
    this.backend = new MemoryBackend({ sizeBytes: 4 * MiB })
  }
  async checkpoint(): Promise<void> {
    this.checkpoints++
    const v = await this.cp.getVolume(this.name)
    const root = CID.create(1, 0x71, await sha256.digest(new TextEncoder().encode(`${this.name}-${this.checkpoints}`))).toString()
    await this.cp.updateVolumeHead(this.name, { expectedRevision: v.revision, epoch: this.epoch }, { rootCid: root, sizeBytes: v.sizeBytes, journalSeq: this.checkpoints })
  }
  async resize(): Promise<void> {}
  status(): Record<string, unknown> {
    return { checkpoints: this.checkpoints }
  }
  async detach(): Promise<void> {
    this.detaches++
  }
}

async function setup(opts: { attach?: 'lazy' | 'eager'; failFirst?: boolean } = {}) {
  const cp = new LocalControlPlane({ path: ':memory:' }, { logger: silentLogger() })
  await cp.start()
  await cp.createBlockStore({ name: 'local', hostPath: '/tmp' })
  await cp.createBlockStore({ name: 'other', hostPath: '/tmp' })
  await cp.createStoragePolicy({ name: 'p', dataShards: 2, parityShards: 1 })
  for (const name of ['a', 'b']) await cp.createVolume({ name, blockStore: 'local', storagePolicy: 'p', sizeBytes: 4 * MiB })
  await cp.createVolume({ name: 'foreign', blockStore: 'other', storagePolicy: 'p', sizeBytes: 4 * MiB })
  const attached: TestVolume[] = []
  let calls = 0
  const host = new EngineHost(
    { blockStore: 'local', attach: opts.attach, defaultExport: 'a' },
    {
      controlPlane: cp,
      logger: silentLogger(),
      registry: new Registry(),
      attachVolume: async (name) => {
        calls++
        if (opts.failFirst === true && calls === 1) throw new Error('storage nodes not reachable yet')
        const v = await cp.getVolume(name)
        const taken = await cp.acquireEpoch(name, 'test-engine', v.status.epoch)
        const tv = new TestVolume(name, cp, taken.status.epoch)
        attached.push(tv)
        return tv
      },
    },
  )
  await host.start()
  return { cp, host, attached, calls: () => calls }
}

describe('EngineHost', () => {
  test('attaches lazily, once, on concurrent first connections; the empty name is the default export', async () => {
    const { cp, host, attached } = await setup()
    assert.equal(attached.length, 0)
    const [x, y, z] = await Promise.all([host.resolve('a'), host.resolve('a'), host.resolve('')])
    assert.ok(x !== undefined && x === y && y === z)
    assert.equal(attached.length, 1)
    assert.deepEqual(host.attachedNames(), ['a'])
    await host.stop()
    await cp.stop()
  })

  test('unknown and foreign volumes are not served; list names only this block store', async () => {
    const { cp, host, attached } = await setup()
    assert.equal(await host.resolve('nope'), undefined)
    assert.equal(await host.resolve('foreign'), undefined)
    assert.deepEqual(await host.list(), ['a', 'b'])
    assert.equal(attached.length, 0)
    await host.stop()
    await cp.stop()
  })

  test('a failed attach is retried on the next connection', async () => {
    const { cp, host, calls } = await setup({ failFirst: true })
    assert.equal(await host.resolve('a'), undefined)
    assert.notEqual(await host.resolve('a'), undefined)
    assert.equal(calls(), 2)
    await host.stop()
    await cp.stop()
  })

  test('eager mode attaches every volume of the block store; stop detaches each exactly once', async () => {
    const { cp, host, attached } = await setup({ attach: 'eager' })
    assert.deepEqual(attached.map((v) => v.name).sort(), ['a', 'b'])
    await host.stop()
    await host.stop()
    assert.deepEqual(attached.map((v) => v.detaches), [1, 1])
    assert.equal(await host.resolve('a'), undefined)
    await cp.stop()
  })
})

describe('engine admin API', () => {
  async function withApi(fn: (client: AdminClient, ctx: Awaited<ReturnType<typeof setup>>) => Promise<void>): Promise<void> {
    const ctx = await setup()
    const logger = silentLogger()
    const server = new HealthServer(
      { listen: '127.0.0.1:0', readiness: () => undefined, routes: (app) => mountAdminApi(app, { host: ctx.host, controlPlane: ctx.cp, logger }) },
      { logger, registry: new Registry() },
    )
    await server.start()
    try {
      await fn(new AdminClient({ address: server.address(), timeoutMs: 10_000 }), ctx)
    } finally {
      await server.stop()
      await ctx.host.stop()
      await ctx.cp.stop()
    }
  }

  test('a snapshot of an attached volume checkpoints first, so it holds the head after every acknowledged write', async () => {
    await withApi(async (client, { host, attached, cp }) => {
      await host.resolve('a')
      const snap = await client.snapshot('a', 's1')
      assert.equal(attached[0]?.checkpoints, 1)
      const head = (await cp.getVolume('a')).status.head
      assert.ok(head.rootCid !== null)
      assert.equal(snap.status.rootCid, head.rootCid)
      const clone = await client.clone('a', 'a-copy')
      assert.equal(attached[0]?.checkpoints, 2)
      assert.equal(clone.status.head.rootCid, (await cp.getVolume('a')).status.head.rootCid)
    })
  })

  test('a volume not attached here is snapshotted from its stored head without attaching it', async () => {
    await withApi(async (client, { attached }) => {
      const snap = await client.snapshot('b', 'sb')
      assert.equal(snap.status.rootCid, null)
      assert.equal(attached.length, 0)
      const listed = await client.listVolumes()
      assert.deepEqual(listed.map((v) => [v.name, v.engine]), [['a', null], ['b', null], ['foreign', null]])
    })
  })

  test('bad requests get typed errors with the server-side name and kind', async () => {
    await withApi(async (client) => {
      const cases: Array<[() => Promise<unknown>, string, string]> = [
        [() => client.snapshot('missing', 's'), 'NotFoundError', 'not-found'],
        [() => client.snapshot('a', ''), 'InvalidArgumentError', 'invalid-argument'],
        [() => client.resize('a', 1), 'InvalidArgumentError', 'invalid-argument'],
        [() => client.resize('a', 0.5), 'InvalidArgumentError', 'invalid-argument'],
        [() => client.clone('a', 'Bad_Name'), 'InvalidArgumentError', 'invalid-argument'],
      ]
      for (const [call, remoteName, kind] of cases) {
        await assert.rejects(call(), (err: unknown) => {
          assert.ok(err instanceof AdminApiError, String(err))
          assert.equal(err.remoteName, remoteName)
          assert.equal(err.kind, kind)
          return true
        })
      }
    })
  })

  test('an unreachable engine is a typed error', async () => {
    const client = new AdminClient({ address: '127.0.0.1:1', timeoutMs: 2000 })
    await assert.rejects(client.listVolumes(), { name: 'EngineUnreachableError' })
  })
})
