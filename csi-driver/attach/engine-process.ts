/**
 * The volume's engine on this node: a detached `cairn engine` child per staged volume,
 * serving only that volume (lazy attach: the first NBD connection takes the epoch, or,
 * for a read-only publish, `--read-only`: it serves the head and takes no epoch)
 * on a Unix socket under the plugin's state dir. Detached, so a restarted node plugin
 * finds it still serving and the filesystem above it never notices.
 */
import { spawn } from 'node:child_process'
import { open, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { childEnvironment } from '../../core/config.js'
import { CairnError } from '../../core/errors.js'
import { freePort } from '../../core/free-port.js'
import { processAlive, waitFor } from './process.js'
import { ENGINE_MALLOC_ENV } from '../../engine/host/malloc-env.js'

/** The engine child exited or did not become ready in time. */
export class EngineStartError extends CairnError {
  override readonly name = 'EngineStartError'
  readonly kind = 'unavailable'
}

/**
 * How to start `cairn engine`. The command line is `command ...args engine --data-dir ...`.
 */
export interface EngineLaunchInit {
  /** The executable. @default process.execPath */
  command?: string
  /** Arguments before `engine`, e.g. the path of dist/cli/main.js. */
  argsPrefix: readonly string[]
  /** Data dir of the Local control plane the engine attaches through. */
  dataDir: string
  /** Recorded as the attachment (epoch holder). */
  nodeId: string
  /**
   * The control plane the engine attaches through: the Local one in `dataDir`, or the
   * Kubernetes CRDs (in-cluster config unless `kubeconfig`; the cluster token then comes
   * from the block store's Secret in CAIRN_NAMESPACE, which the engine inherits). @default 'local'
   */
  controlPlane?: 'local' | 'kubernetes'
  kubeconfig?: string
  /** @default 'local' */
  blockStore?: string
  /** @default 'info' */
  logLevel?: string
  /** How long start waits for the engine to be ready. @default 60000 */
  startTimeoutMs?: number
  /** How long stop waits after SIGTERM (final flush) before SIGKILL. @default 120000 */
  stopTimeoutMs?: number
  /**
   * The size the volume's export advertises when it is attached through nbdfuse, which
   * fixes its file's size at connect; the loop device above it is limited to the
   * volume's real size and raised online by NodeExpandVolume. @default 2^50 (1 PiB)
   */
  exportSizeCeilingBytes?: number
}

/** See {@link EngineLaunchInit.exportSizeCeilingBytes}. */
export const DEFAULT_EXPORT_SIZE_CEILING_BYTES = 2 ** 50

export interface EngineStartOptions {
  /** Pass `--export-size-ceiling-bytes` (engine/nbd/growable.ts). @default none */
  exportSizeCeilingBytes?: number
  /** Pass `--read-only`: serve the volume's head without taking its epoch (read-only publishes). @default false */
  readOnly?: boolean
}

export interface RunningEngine {
  pid: number
  socketPath: string
  adminAddress: string
}

/** Starts the engine for one volume; `volumeDir` holds its socket and log. */
export async function startEngine(init: EngineLaunchInit, volumeId: string, volumeDir: string, options: EngineStartOptions = {}): Promise<RunningEngine> {
  const socketPath = join(volumeDir, 'engine.sock')
  // A socket file left by a killed engine would make the new one fail to listen.
  await rm(socketPath, { force: true })
  const adminAddress = `127.0.0.1:${await freePort('127.0.0.1')}`
  const args = [
    ...init.argsPrefix, 'engine',
    '--data-dir', init.dataDir,
    '--socket', socketPath,
    // The TCP listener is required by `cairn engine`; an ephemeral loopback port keeps it out of the way.
    '--listen', '127.0.0.1:0',
    '--metrics-listen', adminAddress,
    '--node-id', init.nodeId,
    '--block-store', init.blockStore ?? 'local',
    '--attach', 'lazy',
    // Only this volume: no other export name can make this engine take (and fence) another volume.
    '--volume', volumeId,
    '--log-level', init.logLevel ?? 'info',
    '--control-plane', init.controlPlane ?? 'local',
    ...(init.kubeconfig === undefined ? [] : ['--kubeconfig', init.kubeconfig]),
    ...(options.exportSizeCeilingBytes === undefined ? [] : ['--export-size-ceiling-bytes', String(options.exportSizeCeilingBytes)]),
    ...(options.readOnly === true ? ['--read-only'] : []),
  ]
  const log = await open(join(volumeDir, 'engine.log'), 'a')
  try {
    const child = spawn(init.command ?? process.execPath, args, { detached: true, stdio: ['ignore', log.fd, log.fd], env: childEnvironment(ENGINE_MALLOC_ENV) })
    const pid = child.pid
    if (pid === undefined) throw new EngineStartError('cairn engine could not be spawned')
    child.unref()
    let exited = false
    child.once('exit', () => (exited = true))
    const ready = await waitFor(async () => {
      if (exited) return 'exited'
      return (await engineReady(adminAddress)) ? 'ready' : undefined
    }, init.startTimeoutMs ?? 60_000)
    if (ready !== 'ready') {
      if (!exited) process.kill(pid, 'SIGKILL')
      const tail = (await readFile(join(volumeDir, 'engine.log'), 'utf8').catch(() => '')).slice(-2000)
      throw new EngineStartError(`cairn engine for ${volumeDir} ${ready === 'exited' ? 'exited' : 'was not ready in time'}: ${tail}`)
    }
    return { pid, socketPath, adminAddress }
  } finally {
    await log.close()
  }
}

/** True when the engine's health server says it is ready. */
export async function engineReady(adminAddress: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${adminAddress}/readyz`, { signal: AbortSignal.timeout(2000) })
    await res.arrayBuffer()
    return res.ok
  } catch {
    return false
  }
}

/**
 * Engines serving `socketPath`, found by their command line: after a crash of the
 * plugin the state file may not name the pid it had just spawned.
 */
export async function findEnginePids(socketPath: string): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0')
    const at = argv.indexOf('--socket')
    if (at >= 0 && argv[at + 1] === socketPath && argv.includes('engine')) pids.push(Number(entry))
  }
  return pids
}

/** SIGTERM (the engine flushes, checkpoints and releases its attachment), then SIGKILL after the timeout. */
export async function stopEngine(socketPath: string, stopTimeoutMs = 120_000): Promise<void> {
  for (const pid of await findEnginePids(socketPath)) {
    try {
      process.kill(pid, 'SIGTERM')
    } catch {
      continue
    }
    const gone = await waitFor(() => (processAlive(pid) ? undefined : true), stopTimeoutMs)
    if (gone !== true && processAlive(pid)) process.kill(pid, 'SIGKILL')
  }
  await rm(socketPath, { force: true })
}
