/**
 * The node service against a real `cairn dev`: real engines, nbdfuse, loop devices,
 * ext4/xfs and mounts on this machine. Every test cleans up in `finally`, and the
 * last one checks that no mount, loop device, FUSE mount or engine was leaked.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { silentLogger } from '../core/logger.js'
import { AdminClient } from '../engine/host/admin-client.js'
import { CLI_MAIN, Dev, MiB, patterned, waitUntil } from '../e2e/harness.js'
import { runCommand } from './attach/command.js'
import { findEnginePids } from './attach/engine-process.js'
import { readMounts } from './mounts/mountinfo.js'
import { createNodeService, type CairnNodeService } from './node-service.js'
import { NodeStateStore } from './state.js'
import { createLocalControlPlane } from '../control-plane/local/local-control-plane.js'
import type { VolumeCapability } from './types.js'

const mountCap = (fsType = 'ext4', mountFlags: string[] = []): VolumeCapability => ({
  accessMode: 'SINGLE_NODE_WRITER',
  accessType: { kind: 'mount', fsType, mountFlags, volumeMountGroup: '' },
})
const blockCap: VolumeCapability = { accessMode: 'SINGLE_NODE_WRITER', accessType: { kind: 'block' } }
const common = { publishContext: {}, secrets: {}, volumeContext: {} }

/** A tree of files: path → content. */
type Tree = Record<string, Buffer>

async function writeTree(root: string, tree: Tree): Promise<void> {
  for (const [name, data] of Object.entries(tree)) {
    await mkdir(join(root, name, '..'), { recursive: true })
    await writeFile(join(root, name), data)
  }
  await runCommand('sync', [])
}

/** Every regular file under root (lost+found excluded) with its content. */
async function readTree(root: string): Promise<Tree> {
  const out: Tree = {}
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`
      if (path === 'lost+found') continue
      if (entry.isDirectory()) await walk(path)
      else out[path] = await readFile(join(root, path))
    }
  }
  await walk('')
  return out
}

function assertTree(actual: Tree, expected: Tree): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort())
  for (const [name, data] of Object.entries(expected)) assert.ok(actual[name]?.equals(data), `${name} has the expected content`)
}

describe('CSI node service over nbdfuse + loop against cairn dev', { concurrency: false }, () => {
  let dev: Dev
  let work: string
  const services: CairnNodeService[] = []
  /** (service, volume, staging path) of everything staged, unstaged in `after` if a test failed midway. */
  const staged: Array<{ service: CairnNodeService; volumeId: string; stagingTargetPath: string; targets: string[] }> = []

  function nodeService(name: string): CairnNodeService {
    const service = createNodeService({
      nodeId: name,
      stateDir: join(work, `state-${name}`),
      engine: { argsPrefix: [CLI_MAIN], dataDir: dev.dataDir, logLevel: 'warn' },
      attachMode: 'fuse',
      maxVolumesPerNode: 16,
      logger: silentLogger(),
    })
    services.push(service)
    return service
  }

  async function createVolume(name: string, size: string, extra: string[] = []): Promise<void> {
    const out = extra.length === 0 ? await dev.cli(['volume', 'create', name, '--size', size]) : await dev.cli(['volume', 'clone', name, ...extra])
    assert.equal(out.code, 0, out.stderr)
  }

  async function stagePublish(service: CairnNodeService, volumeId: string, cap: VolumeCapability, readonly = false): Promise<{ staging: string; target: string }> {
    const staging = join(work, 'staging', `${volumeId}-${services.indexOf(service)}`)
    const target = join(work, 'pods', `${volumeId}-${services.indexOf(service)}`, cap.accessType?.kind === 'block' ? 'dev' : 'mnt')
    const entry = { service, volumeId, stagingTargetPath: staging, targets: [target] }
    staged.push(entry)
    await service.nodeStageVolume({ ...common, volumeId, stagingTargetPath: staging, volumeCapability: cap })
    await service.nodePublishVolume({ ...common, volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap, readonly })
    return { staging, target }
  }

  async function unpublishUnstage(service: CairnNodeService, volumeId: string, staging: string, target: string): Promise<void> {
    await service.nodeUnpublishVolume({ volumeId, targetPath: target })
    await service.nodeUnstageVolume({ volumeId, stagingTargetPath: staging })
    staged.splice(staged.findIndex((s) => s.service === service && s.volumeId === volumeId), 1)
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-csi-node-'))
    dev = await Dev.start({ size: '64MiB', dataShards: 2, parityShards: 1 })
  })

  after(async () => {
    for (const s of staged.reverse()) {
      for (const t of s.targets) await s.service.nodeUnpublishVolume({ volumeId: s.volumeId, targetPath: t }).catch(() => undefined)
      await s.service.nodeUnstageVolume({ volumeId: s.volumeId, stagingTargetPath: s.stagingTargetPath }).catch(() => undefined)
    }
    // Whatever a failed test or a killed child left staged, recorded in a state dir.
    for (const dir of await readdir(work).catch(() => [] as string[])) {
      if (!dir.startsWith('state-')) continue
      const sweeper = createNodeService({ nodeId: 'sweeper', stateDir: join(work, dir), engine: { argsPrefix: [CLI_MAIN], dataDir: dev.dataDir }, logger: silentLogger() })
      for (const st of await new NodeStateStore(join(work, dir)).list()) {
        await sweeper.nodeUnstageVolume({ volumeId: st.volumeId, stagingTargetPath: st.stagingPath }).catch(() => undefined)
      }
    }
    await dev.destroy()
    await rm(work, { recursive: true, force: true })
  })

  test('a tree written through one node plugin is intact when a second plugin stages the volume', async () => {
    await createVolume('tree', '64MiB')
    const tree: Tree = { 'readme.txt': Buffer.from('cairn\n'), 'a/b/blob.bin': patterned(2 * MiB + 11, 1), 'a/small.bin': patterned(5000, 2) }
    const first = nodeService('node-a')
    await first.start()
    const { staging, target } = await stagePublish(first, 'tree', mountCap('ext4', ['noatime']))
    // Repeats with the same parameters are no-ops; other parameters are refused.
    await first.nodeStageVolume({ ...common, volumeId: 'tree', stagingTargetPath: staging, volumeCapability: mountCap('ext4', ['noatime']) })
    await first.nodePublishVolume({ ...common, volumeId: 'tree', stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap('ext4', ['noatime']), readonly: false })
    await assert.rejects(first.nodeStageVolume({ ...common, volumeId: 'tree', stagingTargetPath: staging, volumeCapability: mountCap('xfs') }), { name: 'CsiAlreadyExistsError' })
    // The same target or staging path again with another capability or readonly flag is ALREADY_EXISTS (spec), also after a plugin restart.
    const multiWriter: VolumeCapability = { ...mountCap('ext4', ['noatime']), accessMode: 'SINGLE_NODE_MULTI_WRITER' }
    const publishAgain = (service: CairnNodeService, cap: VolumeCapability, readonly: boolean) =>
      service.nodePublishVolume({ ...common, volumeId: 'tree', stagingTargetPath: staging, targetPath: target, volumeCapability: cap, readonly })
    const refusedAgain = async (service: CairnNodeService): Promise<void> => {
      await assert.rejects(publishAgain(service, mountCap('ext4', ['noatime']), true), { name: 'CsiAlreadyExistsError' }, 'readonly flag')
      await assert.rejects(publishAgain(service, mountCap('ext4'), false), { name: 'CsiAlreadyExistsError' }, 'mount flags')
      await assert.rejects(publishAgain(service, multiWriter, false), { name: 'CsiAlreadyExistsError' }, 'access mode')
      await assert.rejects(service.nodeStageVolume({ ...common, volumeId: 'tree', stagingTargetPath: staging, volumeCapability: multiWriter }), { name: 'CsiAlreadyExistsError' }, 'stage access mode')
      await publishAgain(service, mountCap('ext4', ['noatime']), false)
    }
    await refusedAgain(first)
    const restarted = nodeService('node-a')
    await restarted.start()
    await refusedAgain(restarted)
    const mounts = await readMounts()
    assert.ok(mounts.find((m) => m.mountPoint === staging)?.mountOptions.includes('noatime'), 'the staging mount has the requested flag')
    await writeTree(target, tree)
    // A read-only publish of the same staging mount refuses writes.
    const roTarget = join(work, 'pods', 'tree-ro', 'mnt')
    await first.nodePublishVolume({ ...common, volumeId: 'tree', stagingTargetPath: staging, targetPath: roTarget, volumeCapability: mountCap('ext4', ['noatime']), readonly: true })
    await assert.rejects(writeFile(join(roTarget, 'nope.txt'), 'x'), { code: 'EROFS' })
    assert.ok((await readFile(join(roTarget, 'readme.txt'))).equals(tree['readme.txt'] as Buffer))
    await first.nodeUnpublishVolume({ volumeId: 'tree', targetPath: roTarget })
    const recorded = (await new NodeStateStore(join(work, 'state-node-a')).read('tree'))?.publishes
    assert.deepEqual(Object.keys(recorded ?? {}), [target], 'unpublish forgets the target; the other publish stays recorded')
    const stats = await first.nodeGetVolumeStats({ volumeId: 'tree', volumePath: target, stagingTargetPath: staging })
    assert.equal(stats.volumeCondition?.abnormal, false)
    const bytes = stats.usage.find((u) => u.unit === 'BYTES')
    assert.ok(bytes !== undefined && bytes.total > 50 * MiB && bytes.used >= 2 * MiB, JSON.stringify(stats.usage))
    assert.ok((stats.usage.find((u) => u.unit === 'INODES')?.used ?? 0) > 3)
    await unpublishUnstage(first, 'tree', staging, target)
    // Both again: idempotent.
    await first.nodeUnpublishVolume({ volumeId: 'tree', targetPath: target })
    await first.nodeUnstageVolume({ volumeId: 'tree', stagingTargetPath: staging })

    const second = nodeService('node-b')
    await second.start()
    const again = await stagePublish(second, 'tree', mountCap('ext4'))
    assertTree(await readTree(again.target), tree)
    await unpublishUnstage(second, 'tree', again.staging, again.target)
  })

  test('a volume restored from a snapshot of a mounted volume holds exactly the tree at snapshot time', async () => {
    // mkfs.xfs wants at least 300 MB; volumes are thin, so the size costs nothing.
    await createVolume('snapsrc', '320MiB')
    const service = nodeService('node-c')
    await service.start()
    const src = await stagePublish(service, 'snapsrc', mountCap('xfs'))
    const before: Tree = { 'one.txt': Buffer.from('before the snapshot\n'), 'd/two.bin': patterned(MiB + 3, 3) }
    await writeTree(src.target, before)
    await runCommand('fsfreeze', ['--freeze', src.staging])
    const admin = await new NodeStateStore(join(work, 'state-node-c')).read('snapsrc')
    try {
      assert.ok(admin?.engine != null)
      await new AdminClient({ address: admin.engine.adminAddress }).snapshot('snapsrc', 'snap-1')
    } finally {
      await runCommand('fsfreeze', ['--unfreeze', src.staging])
    }
    await writeTree(src.target, { 'after.txt': Buffer.from('after\n'), 'd/two.bin': patterned(MiB, 4) })
    await createVolume('restored', '', ['--from-snapshot', 'snap-1'])
    // xfs refuses a second mount of the same filesystem UUID; nouuid is the flag for a restored copy.
    const restored = await stagePublish(service, 'restored', mountCap('xfs', ['nouuid']))
    assertTree(await readTree(restored.target), before)
    await unpublishUnstage(service, 'restored', restored.staging, restored.target)
    await unpublishUnstage(service, 'snapsrc', src.staging, src.target)
  })

  test('a raw block volume published as a device node reads back the patterns written through it', async () => {
    await createVolume('raw', '32MiB')
    const service = nodeService('node-d')
    await service.start()
    // Two NodeStage calls at once on one volume: one runs, the other is ABORTED (the CO retries).
    const racing = service.nodeStageVolume({ ...common, volumeId: 'raw', stagingTargetPath: join(work, 'staging', 'raw-race'), volumeCapability: blockCap })
    await assert.rejects(service.nodeStageVolume({ ...common, volumeId: 'raw', stagingTargetPath: join(work, 'staging', 'raw-race'), volumeCapability: blockCap }), { name: 'OperationPendingError' })
    await racing
    await service.nodeUnstageVolume({ volumeId: 'raw', stagingTargetPath: join(work, 'staging', 'raw-race') })
    const { staging, target } = await stagePublish(service, 'raw', blockCap)
    const offsets = [0, 4096 * 7, 16 * MiB - 65536, 32 * MiB - 8192]
    const fh = await open(target, 'r+')
    try {
      for (const [i, off] of offsets.entries()) await fh.write(patterned(8192, 100 + i), 0, 8192, off)
      await fh.sync()
    } finally {
      await fh.close()
    }
    const stats = await service.nodeGetVolumeStats({ volumeId: 'raw', volumePath: target, stagingTargetPath: staging })
    assert.equal(stats.usage[0]?.total, 32 * MiB)
    await unpublishUnstage(service, 'raw', staging, target)
    // Through a new attach (new engine, new epoch): the bytes were flushed and persisted.
    const again = await stagePublish(nodeService('node-e'), 'raw', blockCap)
    const check = await open(again.target, 'r')
    try {
      for (const [i, off] of offsets.entries()) {
        const buf = Buffer.alloc(8192)
        await check.read(buf, 0, 8192, off)
        assert.ok(buf.equals(patterned(8192, 100 + i)), `pattern at ${off}`)
      }
    } finally {
      await check.close()
    }
    const second = services[services.length - 1] as CairnNodeService
    assert.equal((await second.nodeGetVolumeStats({ volumeId: 'raw', volumePath: again.target, stagingTargetPath: again.staging })).volumeCondition?.abnormal, false)
    // The engine dies: the condition turns abnormal, and unstaging still cleans everything up.
    const engine = (await new NodeStateStore(join(work, 'state-node-e')).read('raw'))?.engine
    assert.ok(engine != null)
    process.kill(engine.pid, 'SIGKILL')
    await waitUntil(async () => (await findEnginePids(engine.socketPath)).length === 0, 10_000, 'the engine to be gone')
    assert.equal((await second.nodeGetVolumeStats({ volumeId: 'raw', volumePath: again.target, stagingTargetPath: again.staging })).volumeCondition?.abnormal, true)
    await unpublishUnstage(second, 'raw', again.staging, again.target)
  })

  test('expanding a mounted volume online grows the device and the mounted filesystem, data intact, and survives a restage', async () => {
    await createVolume('grow', '320MiB')
    const service = nodeService('node-f')
    await service.start()
    const tree: Tree = { 'keep.bin': patterned(3 * MiB, 9) }
    let { staging, target } = await stagePublish(service, 'grow', mountCap('xfs'))
    await writeTree(target, tree)
    const device = (await new NodeStateStore(join(work, 'state-node-f')).read('grow'))?.device
    assert.ok(typeof device === 'string')
    // The export advertises a ceiling far above the volume; the loop device shows exactly the volume.
    assert.equal(Number((await runCommand('blockdev', ['--getsize64', device])).stdout.trim()), 320 * MiB)
    const totalBytes = async (): Promise<number> => (await service.nodeGetVolumeStats({ volumeId: 'grow', volumePath: target, stagingTargetPath: staging })).usage[0]?.total ?? 0
    const sizeBefore = await totalBytes()
    const expand = () => service.nodeExpandVolume({ volumeId: 'grow', volumePath: target, stagingTargetPath: staging, capacityRange: { requiredBytes: 448 * MiB, limitBytes: 0 }, volumeCapability: mountCap('xfs'), secrets: {} })
    // Online: still mounted, nothing restaged.
    assert.equal((await expand()).capacityBytes, 448 * MiB)
    assert.equal(Number((await runCommand('blockdev', ['--getsize64', device])).stdout.trim()), 448 * MiB)
    const sizeAfter = await totalBytes()
    assert.ok(sizeAfter > sizeBefore + 100 * MiB, `filesystem grew from ${sizeBefore} to ${sizeAfter}`)
    assertTree(await readTree(target), tree)
    // Repeating the call is idempotent.
    assert.equal((await expand()).capacityBytes, 448 * MiB)
    const more: Tree = { 'after-grow.bin': patterned(2 * MiB, 10) }
    await writeTree(target, more)
    await unpublishUnstage(service, 'grow', staging, target)
    ;({ staging, target } = await stagePublish(service, 'grow', mountCap('xfs')))
    assert.ok((await totalBytes()) >= sizeAfter)
    assertTree(await readTree(target), { ...tree, ...more })
    await unpublishUnstage(service, 'grow', staging, target)
  })

  test('a node plugin killed during NodeStage is cleaned up by its restart, and staging then succeeds', async () => {
    await createVolume('crash', '64MiB')
    const stateDir = join(work, 'state-crash')
    const staging = join(work, 'staging', 'crash')
    // The first round is killed before the blank device is formatted, the second after it is mounted.
    for (const stopAt of ['attached', 'mounted']) {
      const child = spawn(process.execPath, [new URL('./attach/stage-child.js', import.meta.url).pathname, stateDir, dev.dataDir, CLI_MAIN, 'crash', staging, stopAt], { stdio: ['ignore', 'pipe', 'inherit'] })
      const lines: string[] = []
      createInterface({ input: child.stdout }).on('line', (l) => lines.push(l))
      const exited = new Promise((resolve) => child.once('exit', resolve))
      await waitUntil(() => lines.includes(`step ${stopAt}`) || child.exitCode !== null, 90_000, `the child to reach ${stopAt}`)
      assert.ok(lines.includes(`step ${stopAt}`), `child reached ${stopAt}: ${lines.join(',')}`)
      child.kill('SIGKILL')
      await exited
      const restarted = createNodeService({ nodeId: 'crash-node', stateDir, engine: { argsPrefix: [CLI_MAIN], dataDir: dev.dataDir }, attachMode: 'fuse', logger: silentLogger() })
      await restarted.start()
      await assertNothingLeaked(stateDir)
      staged.push({ service: restarted, volumeId: 'crash', stagingTargetPath: staging, targets: [] })
      await restarted.nodeStageVolume({ ...common, volumeId: 'crash', stagingTargetPath: staging, volumeCapability: mountCap('ext4') })
      assert.ok((await readMounts()).some((m) => m.mountPoint === staging))
      await restarted.nodeUnstageVolume({ volumeId: 'crash', stagingTargetPath: staging })
      staged.pop()
    }
  })

  test('requests with missing or invalid fields are refused before anything is done', async () => {
    const service = nodeService('node-v')
    const stage = (over: Record<string, unknown>) => service.nodeStageVolume({ ...common, volumeId: 'v', stagingTargetPath: '/tmp/x', volumeCapability: mountCap(), ...over })
    await assert.rejects(stage({ volumeId: '' }), { name: 'InvalidArgumentError' })
    await assert.rejects(stage({ stagingTargetPath: '' }), { name: 'InvalidArgumentError' })
    await assert.rejects(stage({ stagingTargetPath: 'relative/path' }), { name: 'InvalidArgumentError' })
    await assert.rejects(stage({ volumeCapability: undefined }), { name: 'InvalidArgumentError' })
    await assert.rejects(stage({ volumeCapability: mountCap('btrfs') }), { name: 'InvalidArgumentError' })
    await assert.rejects(stage({ volumeCapability: mountCap('ext4', ['a,b']) }), { name: 'InvalidArgumentError' })
    await assert.rejects(stage({ volumeCapability: { ...mountCap(), accessMode: 'MULTI_NODE_MULTI_WRITER' } }), { name: 'InvalidArgumentError' })
    await assert.rejects(service.nodePublishVolume({ ...common, volumeId: 'nope', stagingTargetPath: '/tmp/s', targetPath: '/tmp/t', volumeCapability: mountCap(), readonly: false }), { name: 'CsiFailedPreconditionError' })
    await assert.rejects(service.nodeGetVolumeStats({ volumeId: 'nope', volumePath: '/tmp/t', stagingTargetPath: '' }), { name: 'CsiNotFoundError' })
    await assert.rejects(service.nodeExpandVolume({ volumeId: 'nope', volumePath: '/tmp/t', stagingTargetPath: '', capacityRange: undefined, volumeCapability: undefined, secrets: {} }), { name: 'InvalidArgumentError' })
    const info = await service.nodeGetInfo()
    assert.equal(info.accessibleTopology?.segments['topology.cairn.dev/node'], 'node-v')
    assert.deepEqual(await service.nodeGetCapabilities(), ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'])
  })

  test('a snapshot-sourced volume published read-only is staged by two node plugins at once, both read the tree, and no epoch is taken', async () => {
    await createVolume('rosrc', '64MiB')
    const writer = nodeService('node-w')
    await writer.start()
    const src = await stagePublish(writer, 'rosrc', mountCap('ext4'))
    const tree: Tree = { 'shared.txt': Buffer.from('read by many\n'), 'd/blob.bin': patterned(MiB + 17, 7) }
    await writeTree(src.target, tree)
    // A clean unstage flushes the writer's engine into the head before it releases the volume.
    await unpublishUnstage(writer, 'rosrc', src.staging, src.target)
    assert.equal((await dev.cli(['snapshot', 'create', 'ro-snap', '--volume', 'rosrc'])).code, 0)
    await createVolume('ro', '', ['--from-snapshot', 'ro-snap'])
    const cp = createLocalControlPlane({ path: join(dev.dataDir, 'control-plane.sqlite') }, { logger: silentLogger() })
    await cp.start()
    try {
      const before = (await cp.getVolume('ro')).status
      const readerCap: VolumeCapability = { ...mountCap('ext4'), accessMode: 'MULTI_NODE_READER_ONLY' }
      const roContext = { ...common, publishContext: { 'cairn.dev/read-only': 'true' } }
      const one = nodeService('node-r1')
      const two = nodeService('node-r2')
      await Promise.all([one.start(), two.start()])
      // The read-only context with a writable capability is a contradiction: refused before anything is staged.
      await assert.rejects(one.nodeStageVolume({ ...roContext, volumeId: 'ro', stagingTargetPath: join(work, 'staging', 'ro-bad'), volumeCapability: mountCap('ext4') }), { name: 'InvalidArgumentError' })
      const readers: Array<{ service: CairnNodeService; staging: string; target: string }> = []
      for (const service of [one, two]) {
        const staging = join(work, 'staging', `ro-${services.indexOf(service)}`)
        const target = join(work, 'pods', `ro-${services.indexOf(service)}`, 'mnt')
        staged.push({ service, volumeId: 'ro', stagingTargetPath: staging, targets: [target] })
        await service.nodeStageVolume({ ...roContext, volumeId: 'ro', stagingTargetPath: staging, volumeCapability: readerCap })
        await service.nodePublishVolume({ ...roContext, volumeId: 'ro', stagingTargetPath: staging, targetPath: target, volumeCapability: readerCap, readonly: true })
        readers.push({ service, staging, target })
      }
      // Both are staged and serving at the same time: neither fenced the other.
      for (const r of readers) {
        assertTree(await readTree(r.target), tree)
        await assert.rejects(writeFile(join(r.target, 'nope.txt'), 'x'), { code: 'EROFS' })
        const stats = await r.service.nodeGetVolumeStats({ volumeId: 'ro', volumePath: r.target, stagingTargetPath: r.staging })
        assert.equal(stats.volumeCondition?.abnormal, false, stats.volumeCondition?.message)
      }
      const during = (await cp.getVolume('ro')).status
      assert.equal(during.epoch, before.epoch, 'no reader took an epoch')
      assert.equal(during.attachment, null)
      assert.deepEqual(during.head, before.head, 'no reader wrote a head')
      for (const r of readers) await unpublishUnstage(r.service, 'ro', r.staging, r.target)
      assert.equal((await cp.getVolume('ro')).status.epoch, before.epoch)
    } finally {
      await cp.stop()
    }
  })

  test('nothing is leaked: no mount, loop device, FUSE mount or engine under the test directory', async () => {
    for (const dir of await readdir(work)) if (dir.startsWith('state-')) await assertNothingLeaked(join(work, dir))
    assert.deepEqual((await readMounts()).filter((m) => m.mountPoint.startsWith(work)).map((m) => m.mountPoint), [])
  })

  async function assertNothingLeaked(stateDir: string): Promise<void> {
    const mounts = await readMounts()
    assert.deepEqual(mounts.filter((m) => m.mountPoint.startsWith(stateDir) || m.mountPoint.startsWith(join(work, 'staging'))).map((m) => m.mountPoint), [], 'no mounts left')
    const loops = (await runCommand('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'])).stdout
    assert.ok(!loops.includes(stateDir), `no loop device backed by a file under ${stateDir}: ${loops}`)
    const volumes = await readdir(join(stateDir, 'volumes')).catch(() => [] as string[])
    for (const v of volumes) assert.deepEqual(await findEnginePids(join(stateDir, 'volumes', v, 'engine.sock')), [], 'no engine left')
    assert.deepEqual(volumes, [], 'no volume state left')
  }
})
