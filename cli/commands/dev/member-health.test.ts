import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../core/logger.js'
import { LocalControlPlane } from '../../../control-plane/local/local-control-plane.js'
import { DEV_BLOCK_STORE, devMembers, publishMembers, updateMembers } from './bootstrap.js'
import { MemberHealthMonitor } from './member-health.js'

async function withControlPlane(fn: (cp: LocalControlPlane) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-member-health-'))
  const cp = new LocalControlPlane({ path: join(dir, 'cp.sqlite') }, { logger: silentLogger() })
  await cp.start()
  try {
    await cp.createBlockStore({ name: DEV_BLOCK_STORE, hostPath: dir, failureDomainKey: 'cairn.dev/node' })
    const nodes = [0, 1, 2].map((i) => ({ id: `node-${i}`, address: `127.0.0.1:${7000 + i}`, peerId: `peer-${i}`, meshAddress: `127.0.0.1:${8000 + i}` }))
    await publishMembers(cp, devMembers(nodes), silentLogger())
    await fn(cp)
  } finally {
    await cp.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

const stateOf = async (cp: LocalControlPlane, id: string) => (await cp.getClusterMap(DEV_BLOCK_STORE)).members.find((m) => m.id === id)?.state

test('a member dead for the whole timeout goes down in a new epoch, and active again when it is back; shorter outages change nothing', async () => {
  await withControlPlane(async (cp) => {
    let nowMs = 1_000_000
    const up = new Map([['node-0', true], ['node-1', true], ['node-2', true]])
    const monitor = new MemberHealthMonitor({ downTimeoutMs: 10_000 }, { cp, probe: async (id) => up.get(id) ?? false, logger: silentLogger(), clock: () => nowMs })
    await monitor.tick()
    const epoch0 = (await cp.getClusterMap(DEV_BLOCK_STORE)).epoch
    up.set('node-1', false)
    nowMs += 9_999
    await monitor.tick()
    assert.equal(await stateOf(cp, 'node-1'), 'active', 'down before the timeout')
    assert.equal((await cp.getClusterMap(DEV_BLOCK_STORE)).epoch, epoch0, 'a short outage published a map')
    nowMs += 1
    await monitor.tick()
    assert.equal(await stateOf(cp, 'node-1'), 'down')
    assert.equal(await stateOf(cp, 'node-0'), 'active')
    assert.equal((await cp.getClusterMap(DEV_BLOCK_STORE)).epoch, epoch0 + 1)
    nowMs += 60_000
    await monitor.tick()
    assert.equal((await cp.getClusterMap(DEV_BLOCK_STORE)).epoch, epoch0 + 1, 'a member already down was published again')
    up.set('node-1', true)
    await monitor.tick()
    assert.equal(await stateOf(cp, 'node-1'), 'active')
    // Healthy again resets the clock: one more short outage does not bring it down.
    up.set('node-1', false)
    nowMs += 5_000
    await monitor.tick()
    assert.equal(await stateOf(cp, 'node-1'), 'active')
  })
})

test('a probe that throws counts as unhealthy, and a member that never answered goes down after the timeout from when watching began', async () => {
  await withControlPlane(async (cp) => {
    let nowMs = 0
    const monitor = new MemberHealthMonitor(
      { downTimeoutMs: 1000 },
      {
        cp,
        probe: async (id) => {
          if (id === 'node-2') throw new Error('connection refused')
          return id === 'node-0'
        },
        logger: silentLogger(),
        clock: () => nowMs,
      },
    )
    await monitor.tick()
    assert.equal(await stateOf(cp, 'node-2'), 'active')
    nowMs += 1000
    await monitor.tick()
    assert.equal(await stateOf(cp, 'node-1'), 'down')
    assert.equal(await stateOf(cp, 'node-2'), 'down')
    assert.equal(await stateOf(cp, 'node-0'), 'active')
  })
})

test('concurrent map writers both land: the update is recomputed on the newer map', async () => {
  await withControlPlane(async (cp) => {
    const logger = silentLogger()
    const before = (await cp.getClusterMap(DEV_BLOCK_STORE)).epoch
    await Promise.all([
      updateMembers(cp, (ms) => ms.map((m) => (m.id === 'node-0' ? { ...m, state: 'down' as const } : m)), logger),
      updateMembers(cp, (ms) => ms.filter((m) => m.id !== 'node-2'), logger),
    ])
    const map = await cp.getClusterMap(DEV_BLOCK_STORE)
    assert.equal(map.epoch, before + 2)
    assert.deepEqual(map.members.map((m) => `${m.id}:${m.state}`).sort(), ['node-0:down', 'node-1:active'])
  })
})
