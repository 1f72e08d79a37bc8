/**
 * `cairn bench nbd`: fio's nbd engine against three servers in one run —
 * `cairn dev` (4+2 on six local storage-node processes), qemu-nbd over a raw file on
 * the same disk, and nbdkit's memory plugin — with ratios against qemu-nbd. Then a fill of
 * the whole volume (sustained MB/s and engine CPU seconds per GiB), the latency of a
 * snapshot right after it (includes flushing the dirty map) and of a snapshot of the full,
 * quiesced volume, and the engine's memory. For each cairn workload, the CPU the engine
 * and the storage nodes spent per MiB or per operation; after a cairn write workload the
 * bench waits for the flusher to drain before the next one. `--snapshot-volume-gib N` sets
 * the filled volume's size (default: 10 GiB × scale).
 *
 * fio semantics used: `--fsync=32` makes fio issue a sync after every 32 writes, which
 * the nbd engine sends as NBD_CMD_FLUSH (so it measures flush cost, not a file fsync).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFile, writeFile, truncate } from 'node:fs/promises'
import { freePort } from '../core/free-port.js'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { BenchOptions, BenchResult, BenchSuite } from './report.js'
import { statCpuSeconds } from './proc-stat.js'
import { AdminClient } from '../engine/host/admin-client.js'

const exec = promisify(execFile)
const MiB = 1024 * 1024
const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url))

interface Workload {
  name: string
  args: string[]
  /** `bw` reports MB/s, `iops` operations per second. */
  measure: 'bw' | 'iops'
  dir: 'read' | 'write'
}

function workloads(seqBytes: number, runtimeSec: number): Workload[] {
  const timed = ['--time_based', `--runtime=${runtimeSec}`, `--size=${seqBytes}`]
  return [
    { name: 'seq-write-1M-qd8', args: ['--rw=write', '--bs=1M', '--iodepth=8', `--size=${seqBytes}`], measure: 'bw', dir: 'write' },
    { name: 'seq-read-1M-qd8', args: ['--rw=read', '--bs=1M', '--iodepth=8', `--size=${seqBytes}`], measure: 'bw', dir: 'read' },
    { name: 'rand-read-4k-qd32', args: ['--rw=randread', '--bs=4k', '--iodepth=32', ...timed], measure: 'iops', dir: 'read' },
    { name: 'rand-write-4k-qd32', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', ...timed], measure: 'iops', dir: 'write' },
    { name: 'write-4k-flush32', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', '--fsync=32', ...timed], measure: 'iops', dir: 'write' },
  ]
}

interface Server {
  name: string
  uri: string
  stop(): Promise<void>
}

/** Resolves when `check` passes, polling every 50 ms; fails after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`bench nbd: timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const nbdinfoOk = (uri: string) => () => exec('nbdinfo', ['--size', uri]).then(() => true)

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  await exited
  clearTimeout(timer)
}

async function startCairn(workDir: string, sizeBytes: number): Promise<Server & { dataDir: string }> {
  const port = await freePort('127.0.0.1')
  const dataDir = join(workDir, 'cairn')
  const args = [CLI_MAIN, 'dev', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--status-listen', '127.0.0.1:0', '--size', String(sizeBytes), '--log-level', 'warn']
  // The IPC channel stops dev and its children if this benchmark dies.
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const uri = `nbd://127.0.0.1:${port}/demo`
  await until(nbdinfoOk(uri), 120_000, 'cairn dev')
  // dev.json, which names the processes whose CPU is counted, is written just after the export is up.
  await until(() => devProcesses(dataDir).then(() => true), 30_000, 'cairn dev to write dev.json')
  return { name: 'cairn', uri, dataDir, stop: () => stopChild(child) }
}

async function startQemuNbd(workDir: string, sizeBytes: number): Promise<Server> {
  const port = await freePort('127.0.0.1')
  const file = join(workDir, 'qemu-nbd.raw')
  await writeFile(file, '')
  await truncate(file, sizeBytes)
  const child = spawn('qemu-nbd', ['-f', 'raw', '-t', '-x', 'bench', '-b', '127.0.0.1', '-p', String(port), '--shared=8', '--discard=unmap', file], { stdio: 'ignore' })
  const uri = `nbd://127.0.0.1:${port}/bench`
  await until(nbdinfoOk(uri), 30_000, 'qemu-nbd')
  return { name: 'qemu-nbd', uri, stop: () => stopChild(child) }
}

async function startNbdkit(sizeBytes: number): Promise<Server> {
  const port = await freePort('127.0.0.1')
  const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), 'memory', `size=${sizeBytes}`], { stdio: 'ignore' })
  const uri = `nbd://127.0.0.1:${port}/`
  await until(nbdinfoOk(uri), 30_000, 'nbdkit')
  return { name: 'nbdkit-memory', uri, stop: () => stopChild(child) }
}

interface FioRun {
  /** MB/s or IOPS, as the workload measures. */
  value: number
  ioBytes: number
  ios: number
}

async function fio(uri: string, w: Workload, workDir: string): Promise<FioRun> {
  const { stdout } = await exec(
    'fio',
    ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, '--output-format=json', '--randrepeat=0', '--norandommap', '--refill_buffers', ...w.args],
    { cwd: workDir, maxBuffer: 64 * MiB, timeout: 30 * 60_000 },
  )
  // fio prints a connection notice before the JSON.
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { bw_bytes: number; iops: number; io_bytes: number; total_ios: number }> & { error: number }> }).jobs[0]
  if (job === undefined || job.error !== 0) throw new Error(`fio ${w.name} against ${uri} failed`)
  const r = job[w.dir]
  return { value: w.measure === 'bw' ? r.bw_bytes / 1e6 : r.iops, ioBytes: r.io_bytes, ios: r.total_ios }
}

interface DevProcesses {
  engine: { pid: number; adminAddress: string }
  /** The storage nodes' pids. */
  nodes: number[]
}

/** The processes of a running `cairn dev`, from its dev.json. */
async function devProcesses(dataDir: string): Promise<DevProcesses> {
  // bench may not import cli/ (ADR 0018): dev.json is read for the fields used here.
  const dev = JSON.parse(await readFile(join(dataDir, 'dev.json'), 'utf8')) as { engine?: { pid?: number | null; adminAddress?: string | null }; nodes?: Array<{ pid?: number | null }> }
  const { pid, adminAddress } = dev.engine ?? {}
  if (typeof pid !== 'number' || typeof adminAddress !== 'string') throw new Error(`bench nbd: cairn dev in ${dataDir} has no running engine`)
  return { engine: { pid, adminAddress }, nodes: (dev.nodes ?? []).map((n) => n.pid).filter((p): p is number => typeof p === 'number') }
}

async function cpuSecondsOf(pids: readonly number[]): Promise<number> {
  let total = 0
  for (const pid of pids) total += await processCpuSeconds(pid)
  return total
}

/**
 * Waits until the engine has spent under 50 ms of CPU in a second (its flusher has drained
 * what a write workload left in the dirty map), at most `timeoutMs`; resolves to the seconds waited.
 */
async function engineQuiet(pid: number, timeoutMs: number): Promise<number> {
  const start = performance.now()
  let last = await processCpuSeconds(pid)
  while (performance.now() - start < timeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const now = await processCpuSeconds(pid)
    if (now - last < 0.05) break
    last = now
  }
  return (performance.now() - start) / 1000
}

/**
 * One workload against cairn, with the CPU it cost the engine and the storage nodes per
 * MiB (bandwidth workloads) or per operation (IOPS workloads). A write workload's CPU
 * includes the flusher's drain after fio stops, which is also waited out, so the next
 * workload starts on a quiet engine. CPU per operation varies less between runs than
 * throughput does on a shared machine (docs/adr/0008-volume-engine.md, session 9).
 */
async function* cairnWorkload(server: Server & { dataDir: string }, w: Workload, workDir: string, settings: Record<string, string | number | boolean>): AsyncGenerator<BenchResult, number> {
  const pids = await devProcesses(server.dataDir)
  const engineBefore = await processCpuSeconds(pids.engine.pid)
  const nodesBefore = await cpuSecondsOf(pids.nodes)
  const run = await fio(server.uri, w, workDir)
  const drainSeconds = w.dir === 'write' ? await engineQuiet(pids.engine.pid, 120_000) : 0
  const engine = (await processCpuSeconds(pids.engine.pid)) - engineBefore
  const nodes = (await cpuSecondsOf(pids.nodes)) - nodesBefore
  yield { name: `nbd.cairn.${w.name}`, value: run.value, unit: w.measure === 'bw' ? 'MB/s' : 'IOPS', settings }
  const per = w.measure === 'bw' ? { count: run.ioBytes / MiB, scale: 1000, unit: 'ms/MiB' } : { count: run.ios, scale: 1e6, unit: 'us/op' }
  const cpuSettings = { ...settings, ...(w.dir === 'write' ? { includes: 'flusher drain', drainSeconds: Math.round(drainSeconds) } : {}) }
  if (per.count > 0) {
    yield { name: `nbd.cairn.${w.name}.engine-cpu`, value: (engine * per.scale) / per.count, unit: per.unit, settings: cpuSettings }
    yield { name: `nbd.cairn.${w.name}.node-cpu`, value: (nodes * per.scale) / per.count, unit: per.unit, settings: { ...cpuSettings, nodes: pids.nodes.length } }
  }
  return run.value
}

/** Snapshot latency through the engine's admin API (not the CLI, whose process start would dominate). */
async function* snapshotAndMemory(server: Server & { dataDir: string }, sizeBytes: number, workDir: string): AsyncGenerator<BenchResult> {
  const dev = await devProcesses(server.dataDir)
  const cpuBefore = await processCpuSeconds(dev.engine.pid)
  const fillStart = performance.now()
  // Fill the whole volume with incompressible data, so every chunk is distinct and stored.
  await exec('fio', ['--name=fill', '--ioengine=nbd', `--uri=${server.uri}`, '--rw=write', '--bs=1M', '--iodepth=8', `--size=${sizeBytes}`, '--refill_buffers'], {
    cwd: workDir,
    timeout: 4 * 60 * 60_000,
  })
  const fillSeconds = (performance.now() - fillStart) / 1000
  const admin = new AdminClient({ address: dev.engine.adminAddress, timeoutMs: 10 * 60_000 })
  const settings = { volumeBytes: sizeBytes, layout: '4+2' }
  let t = performance.now()
  await admin.snapshot('demo', 'bench-after-fill')
  yield { name: 'nbd.cairn.snapshot.after-fill', value: performance.now() - t, unit: 'ms', settings: { ...settings, includes: 'flush of dirty data' } }
  // The fill's cost includes draining the dirty map (the snapshot above flushed it).
  const drainedSeconds = (performance.now() - fillStart) / 1000
  const cpuSeconds = (await processCpuSeconds(dev.engine.pid)) - cpuBefore
  const gib = sizeBytes / (1024 * MiB)
  yield { name: 'nbd.cairn.fill', value: sizeBytes / 1e6 / drainedSeconds, unit: 'MB/s', settings: { ...settings, fioSeconds: Math.round(fillSeconds), includes: 'flusher drain' } }
  yield { name: 'nbd.cairn.fill.engine-cpu', value: cpuSeconds / gib, unit: 's/GiB', settings }
  // A snapshot of the full, quiesced volume: an O(1) head operation whatever the size.
  const cleanMs: number[] = []
  for (let i = 0; i < 5; i++) {
    t = performance.now()
    await admin.snapshot('demo', `bench-clean-${i}`)
    cleanMs.push(performance.now() - t)
  }
  cleanMs.sort((a, b) => a - b)
  yield { name: 'nbd.cairn.snapshot.clean', value: cleanMs[2] as number, unit: 'ms', settings: { ...settings, of: 'median of 5', maxMs: Math.round(cleanMs[4] as number) } }
  const status = await readFile(`/proc/${dev.engine.pid}/status`, 'utf8')
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN)
  yield { name: 'nbd.cairn.engine.rss', value: kib('VmRSS') / 1024, unit: 'MiB', settings }
  yield { name: 'nbd.cairn.engine.rss-peak', value: kib('VmHWM') / 1024, unit: 'MiB', settings }
}

/** utime + stime of a process, from /proc (Linux). */
async function processCpuSeconds(pid: number): Promise<number> {
  return statCpuSeconds(await readFile(`/proc/${pid}/stat`, 'utf8'))
}

export const nbdSuite: BenchSuite = async function* (options: BenchOptions) {
  const seqBytes = Math.max(8, Math.round(1024 * options.scale)) * MiB
  const runtimeSec = Math.max(1, Math.round(10 * options.scale))
  const volumeBytes =
    options.snapshotVolumeGiB === undefined ? Math.max(64, Math.round(10 * 1024 * options.scale)) * MiB : Math.round(options.snapshotVolumeGiB * 1024) * MiB
  const deviceBytes = Math.max(volumeBytes, seqBytes)
  const results = new Map<string, number>()
  const servers: Array<() => Promise<Server>> = [
    () => startQemuNbd(options.workDir, deviceBytes),
    () => startNbdkit(deviceBytes),
    () => startCairn(options.workDir, deviceBytes),
  ]
  for (const start of servers) {
    const server = await start()
    try {
      for (const w of workloads(seqBytes, runtimeSec)) {
        const settings = { seqBytes, runtimeSec }
        let value: number
        if (server.name === 'cairn') {
          value = yield* cairnWorkload(server as Server & { dataDir: string }, w, options.workDir, settings)
        } else {
          value = (await fio(server.uri, w, options.workDir)).value
          yield { name: `nbd.${server.name}.${w.name}`, value, unit: w.measure === 'bw' ? 'MB/s' : 'IOPS', settings }
        }
        results.set(`${server.name}/${w.name}`, value)
      }
      if (server.name === 'cairn') yield* snapshotAndMemory(server as Server & { dataDir: string }, volumeBytes, options.workDir)
    } finally {
      await server.stop()
    }
  }
  for (const w of workloads(seqBytes, runtimeSec)) {
    const base = results.get(`qemu-nbd/${w.name}`) as number
    for (const name of ['cairn', 'nbdkit-memory']) {
      yield { name: `nbd.${name}.${w.name}.vs-qemu-nbd`, value: (results.get(`${name}/${w.name}`) as number) / base, unit: 'ratio' }
    }
  }
}
