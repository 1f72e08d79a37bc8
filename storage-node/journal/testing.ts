/**
 * Test support for the journal: an in-process storage node with small limits,
 * and the real daemon as a child process (for SIGKILL tests).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { StorageNode } from '../daemon.js'
import { loopbackNodeInit } from '../fixtures.js'
import { fillSeeded } from '../../core/seeded-random.js'

const MAIN = fileURLToPath(new URL('../../cli/main.js', import.meta.url))

/** Whether the storage node with data directory `nodeDataDir` holds a journal (directory) for volume `uid`. */
export function hasJournal(nodeDataDir: string, uid: string): Promise<boolean> {
  return stat(join(nodeDataDir, 'journal', uid)).then(
    () => true,
    (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    },
  )
}

/** A storage node in this process, listening on a free loopback port. */
export async function startInProcessNode(dataDir: string, journal: { segmentSizeBytes?: number; maxRecordBytes?: number } = {}): Promise<StorageNode> {
  const node = new StorageNode(
    loopbackNodeInit(dataDir, {
      segmentSizeBytes: 1024 * 1024,
      maxBatchShards: 16,
      maxBatchBytes: 64 * 1024,
      maxShardBytes: 16 * 1024,
      shutdownGraceMs: 2000,
      journalSegmentSizeBytes: journal.segmentSizeBytes ?? 64 * 1024,
      journalMaxRecordBytes: journal.maxRecordBytes ?? 256 * 1024,
    }),
    { logger: silentLogger(), registry: new Registry() },
  )
  await node.start()
  return node
}

export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export interface DaemonProcess {
  child: ChildProcess
  grpcAddress: string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts `cairn storage-node` and resolves once it logs that it serves (bounded wait). */
export async function spawnDaemon(dataDir: string, listen = '127.0.0.1:0'): Promise<DaemonProcess> {
  const args = [MAIN, 'storage-node', '--data-dir', dataDir, '--listen', listen, '--metrics-listen', '127.0.0.1:0', '--compaction-interval-ms', '0']
  args.push('--journal-segment-size-bytes', String(256 * 1024))
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const stderr: string[] = []
  const serving = new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream })
    lines.on('line', (line) => {
      stderr.push(line)
      try {
        const entry = JSON.parse(line) as { msg?: string; grpcAddress?: string }
        if (entry.msg === 'storage node serving' && entry.grpcAddress !== undefined) resolve(entry.grpcAddress)
      } catch {
        // not a log line
      }
    })
    void exited.then(({ code }) => reject(new Error(`daemon exited with ${code} before serving:\n${stderr.join('\n')}`)))
  })
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`daemon did not serve within 30 s:\n${stderr.join('\n')}`)), 30_000)
  })
  try {
    return { child, exited, grpcAddress: await Promise.race([serving, timeout]) }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** Seeded bytes (xorshift32), so a failing record can be replayed. */
export function seededBytes(length: number, seed: number): Uint8Array {
  return fillSeeded(new Uint8Array(length), seed)
}
