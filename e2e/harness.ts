/**
 * The e2e harness: runs the real `node dist/cli/main.js dev` as a child process on a
 * temporary data directory and free loopback ports, and gives tests its state
 * (dev.json), its log lines, and bounded waits on conditions. Test infrastructure.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { freePort } from '../core/free-port.js'
import { isAlive, readDevStateFile, type DevState } from '../cli/commands/dev/state.js'
import { seededWords } from '../core/seeded-random.js'

/** dist/cli/main.js, the binary under test. */
export const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url))
export const MiB = 1024 * 1024

/**
 * nbdsh runs `python3 -m nbd`; the python3 that has the nbd module is Debian's, which a
 * user-installed interpreter earlier on PATH would otherwise shadow.
 */
export const nbdshEnv = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` }

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitUntil<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError })
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

export interface DevOptions {
  /** Reuse a data dir (restart); default a fresh temp dir. */
  dataDir?: string
  /** NBD port; default a free one (keep it across restarts to keep the URI). */
  port?: number
  size?: string
  dataShards?: number
  parityShards?: number
  extraArgs?: string[]
}

/** A running `cairn dev`. */
export class Dev {
  /** Every log line (stderr) and output line (stdout), bounded. */
  readonly lines: string[] = []
  private exited: Promise<number | null>

  private constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue
      createInterface({ input: stream }).on('line', (line) => {
        this.lines.push(line)
        if (this.lines.length > 50_000) this.lines.splice(0, 10_000)
      })
    }
  }

  static async start(options: DevOptions = {}): Promise<Dev> {
    const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'cairn-e2e-')))
    const port = options.port ?? (await freePort('127.0.0.1'))
    const args = [
      CLI_MAIN, 'dev',
      '--data-dir', dataDir,
      '--listen', `127.0.0.1:${port}`,
      '--status-listen', '127.0.0.1:0',
      '--size', options.size ?? '256MiB',
      '--data-shards', String(options.dataShards ?? 4),
      '--parity-shards', String(options.parityShards ?? 2),
      ...(options.extraArgs ?? []),
    ]
    // The IPC channel stops dev and its children if this test process dies (a runner's timeout kills it).
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    const dev = new Dev(dataDir, port, child)
    try {
      await waitUntil(() => dev.lines.some((l) => l.startsWith('cairn dev: serving')) || dev.failIfExited(), 90_000, 'cairn dev to serve')
    } catch (err) {
      await dev.kill()
      throw new Error(`cairn dev did not start:\n${dev.lines.slice(-40).join('\n')}`, { cause: err })
    }
    return dev
  }

  private failIfExited(): false {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      throw new Error(`cairn dev exited with ${this.child.exitCode ?? this.child.signalCode}`)
    }
    return false
  }

  get uri(): string {
    return `nbd://127.0.0.1:${this.port}/demo`
  }

  uriOf(volume: string): string {
    return `nbd://127.0.0.1:${this.port}/${volume}`
  }

  async state(): Promise<DevState> {
    const state = await readDevStateFile(this.dataDir)
    if (state === undefined) throw new Error('no dev.json')
    return state
  }

  /** Runs `cairn <args>` against this data dir; resolves with exit code and output. */
  cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return runCairn([...args, '--data-dir', this.dataDir])
  }

  /** SIGKILLs the engine and waits until a new one (another pid) is up. */
  async killEngine(): Promise<void> {
    const before = await this.state()
    const pid = before.engine.pid
    if (pid === null) throw new Error('engine is not running')
    process.kill(pid, 'SIGKILL')
    await this.waitEngineUp(pid)
  }

  /** Waits until the engine is up with a pid other than `oldPid`. */
  async waitEngineUp(oldPid?: number | null): Promise<DevState> {
    return waitUntil(async () => {
      const s = await this.state()
      return s.engine.state === 'up' && s.engine.pid !== oldPid && s.engine.adminAddress !== null ? s : undefined
    }, 60_000, 'the engine to be up again')
  }

  /** SIGTERM, then waits for a clean exit; returns the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode
    this.child.kill('SIGTERM')
    return Promise.race([this.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('cairn dev did not stop within 60 s')), 60_000).unref())])
  }

  /** Last resort for `finally`: stops dev and SIGKILLs any child it left. Never throws. */
  async kill(): Promise<void> {
    const state = await readDevStateFile(this.dataDir).catch(() => undefined)
    await this.stop().catch(() => undefined)
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    const pids = state === undefined ? [] : [state.engine.pid, ...state.nodes.map((n) => n.pid)]
    for (const pid of pids) if (pid !== null && isAlive(pid)) process.kill(pid, 'SIGKILL')
  }

  /** Stops dev and deletes its data dir. */
  async destroy(): Promise<void> {
    await this.kill()
    await rm(this.dataDir, { recursive: true, force: true })
  }

  /** Log lines (parsed JSON) whose `msg` matches. */
  logs(msg: string | RegExp): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = []
    for (const line of this.lines) {
      if (!line.startsWith('{')) continue
      try {
        const entry = JSON.parse(line) as Record<string, unknown>
        const m = String(entry.msg ?? '')
        if (typeof msg === 'string' ? m === msg : msg.test(m)) out.push(entry)
      } catch {
        // A line interleaved from two children is not JSON; skip it.
      }
    }
    return out
  }
}

/** Runs the real CLI. */
export function runCairn(args: readonly string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? 1, stdout, stderr })
    })
  })
}

/** Fetches the text of a URL (status page, metrics). */
export async function fetchText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return res.text()
}

/** A deterministic pseudo-random buffer (xorshift32) so failures reproduce from the seed. */
export function patterned(sizeBytes: number, seed: number): Buffer {
  return seededWords(sizeBytes, seed)
}

// ---------------------------------------------------------------- nbdsh regions and dev faults

/** Kills or starts one of a `cairn dev`'s processes through its status server. */
export async function fault(dev: Dev, name: string, action: 'kill' | 'start'): Promise<void> {
  const state = await dev.state()
  const res = await fetch(`${state.statusUrl}v1/processes/${name}/${action}`, { method: 'POST', signal: AbortSignal.timeout(60_000) })
  assert.equal(res.status, 200, `${action} ${name}`)
}

/** nbdsh code writing `mib` MiB of seeded pseudo-random data (distinct chunks, no dedup) at `base`, then flushing. */
export function writeRegion(seed: number, base: number, mib: number): string {
  return [
    'import random',
    `r = random.Random(${seed})`,
    `for i in range(${mib}):`,
    `    h.pwrite(r.randbytes(1048576), ${base} + i * 1048576)`,
    'h.flush()',
  ].join('\n')
}

/** nbdsh code reading the region back MiB by MiB: prints "ok N err N bad N" (bad = wrong data). */
export function checkRegion(seed: number, base: number, mib: number): string {
  return [
    'import random',
    `r = random.Random(${seed})`,
    'ok = err = bad = 0',
    `for i in range(${mib}):`,
    '    want = r.randbytes(1048576)',
    '    try:',
    `        got = h.pread(1048576, ${base} + i * 1048576)`,
    '        ok, bad = (ok + 1, bad) if got == want else (ok, bad + 1)',
    '    except nbd.Error:',
    '        err += 1',
    'print("ok", ok, "err", err, "bad", bad)',
  ].join('\n')
}

/** The counts a {@link checkRegion} run printed. */
export function counts(out: string): { ok: number; err: number; bad: number } {
  const m = /ok (\d+) err (\d+) bad (\d+)/.exec(out)
  assert.ok(m !== null, out)
  return { ok: Number(m[1]), err: Number(m[2]), bad: Number(m[3]) }
}
