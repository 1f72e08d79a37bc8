/**
 * A writer's node dies after a FLUSH, the CSI controller releases its attachment, and a
 * read-only engine is started for the volume: it must serve what the writer acknowledged,
 * which is only in the journal, not the older head (ADR 0026). Real `cairn dev` storage
 * nodes, real `cairn engine` processes, SIGKILL, and nbdcopy as the client.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../core/logger.js'
import { freePort } from '../core/free-port.js'
import { runOk } from '../engine/nbd/testing.js'
import { engineReady } from '../csi-driver/attach/engine-process.js'
import { createLocalControlPlane } from '../control-plane/local/local-control-plane.js'
import { CLI_MAIN, Dev, MiB, patterned, waitUntil } from './harness.js'

const VOLUME = 'rv'
const VOLUME_BYTES = 16 * MiB
/** Below the engine's flush threshold (a quarter of its 64 MiB dirty map): only the interval would flush it. */
const WRITTEN_BYTES = 3 * MiB + 4096

interface EngineProc {
  child: ChildProcess
  socket: string
  exited: Promise<void>
}

describe('a read-only attach after a writer died recovers its journal first', { concurrency: false }, () => {
  let dev: Dev
  let work: string
  const engines: EngineProc[] = []

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-reader-recovery-'))
    dev = await Dev.start({ size: '16MiB', dataShards: 2, parityShards: 1 })
    const created = await dev.cli(['volume', 'create', VOLUME, '--size', `${VOLUME_BYTES}`])
    assert.equal(created.code, 0, created.stderr)
  })

  after(async () => {
    for (const e of engines) if (e.child.exitCode === null && e.child.signalCode === null) e.child.kill('SIGKILL')
    await Promise.all(engines.map((e) => e.exited))
    await dev?.destroy()
    await rm(work, { recursive: true, force: true })
  })

  /** `cairn engine` serving only VOLUME on a Unix socket, as the CSI node plugin starts it. */
  async function startEngine(nodeId: string, extra: string[]): Promise<EngineProc> {
    const socket = join(work, `${nodeId}.sock`)
    const admin = `127.0.0.1:${await freePort('127.0.0.1')}`
    const args = [CLI_MAIN, 'engine', '--data-dir', dev.dataDir, '--socket', socket, '--listen', '127.0.0.1:0', '--metrics-listen', admin, '--node-id', nodeId, '--volume', VOLUME, '--log-level', 'warn', ...extra]
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const proc = { child, socket, exited }
    engines.push(proc)
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`engine ${nodeId} exited: ${stderr}`)
      return engineReady(admin)
    }, 60_000, `engine ${nodeId} to be ready`)
    return proc
  }

  const uri = (e: EngineProc): string => `nbd+unix:///${VOLUME}?socket=${e.socket}`

  test('the FLUSHed writes of a SIGKILLed writer are served read-only after the controller released it', async () => {
    const cp = createLocalControlPlane({ path: join(dev.dataDir, 'control-plane.sqlite') }, { logger: silentLogger() })
    await cp.start()
    try {
      // The writer: its interval flush is far away, so what it acknowledges stays in its journal.
      const writer = await startEngine('node-w', ['--flush-interval-ms', '3600000'])
      const data = patterned(WRITTEN_BYTES, 20261123)
      const source = join(work, 'written.bin')
      await writeFile(source, Buffer.concat([data, Buffer.alloc(VOLUME_BYTES - WRITTEN_BYTES)]))
      // --flush: nbdcopy ends with NBD_CMD_FLUSH, so every write is acknowledged durable.
      await runOk('nbdcopy', ['--flush', source, uri(writer)], 120_000)
      writer.child.kill('SIGKILL')
      await writer.exited

      const held = await cp.getVolume(VOLUME)
      assert.equal(held.status.attachment?.nodeId, 'node-w', 'the dead writer still holds the volume')
      assert.equal(held.status.head.rootCid, null, 'the head lags: the writes are only in the journal')
      // What ControllerUnpublishVolume does for a node that never detached cleanly.
      const released = await cp.releaseAttachment(VOLUME, 'node-w', held.status.attachment.epoch, { headCurrent: false })
      assert.equal(released.status.recoveryPending, true)
      const table = (await dev.cli(['volume', 'list'])).stdout
      assert.match(table.split('\n').find((l) => l.startsWith(`${VOLUME} `)) ?? '', / pending /, `cairn volume list shows the pending recovery:\n${table}`)
      // What ControllerPublishVolume records for a read-only publish, before the node starts its engine.
      await cp.addReader(VOLUME, 'node-r')

      const reader = await startEngine('node-r', ['--read-only'])
      const copy = join(work, 'read.bin')
      await runOk('nbdcopy', [uri(reader), copy], 120_000)
      const read = await readFile(copy)
      assert.equal(read.length, VOLUME_BYTES)
      assert.ok(read.subarray(0, WRITTEN_BYTES).equals(data), 'the reader serves every write the dead writer acknowledged')
      assert.ok(read.subarray(WRITTEN_BYTES).equals(Buffer.alloc(VOLUME_BYTES - WRITTEN_BYTES)), 'and zeroes past them')

      const after = await cp.getVolume(VOLUME)
      assert.equal(after.status.recoveryPending, false, 'the recovery detached cleanly')
      assert.doesNotMatch((await dev.cli(['volume', 'list'])).stdout, / pending /)
      assert.equal(after.status.attachment, null, 'a reader holds no attachment')
      assert.notEqual(after.status.head.rootCid, null, 'the journal was folded into the head')
      assert.ok(after.status.epoch > held.status.epoch, 'the recovery fenced the dead writer with a newer epoch')
      assert.deepEqual(after.status.readers, ['node-r'])
      // Recovered, the reader is protected: no writer can attach under it.
      await assert.rejects(cp.acquireEpoch(VOLUME, 'node-w', after.status.epoch), { name: 'FailedPreconditionError' })
      reader.child.kill('SIGTERM')
      await reader.exited
    } finally {
      await cp.stop()
    }
  })
})
