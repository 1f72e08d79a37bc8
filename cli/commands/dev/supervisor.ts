/**
 * Supervises one child process of `cairn dev`: spawns it, waits until it is ready,
 * restarts it with bounded exponential backoff when it dies, and stops it with
 * SIGTERM (then SIGKILL after a grace period).
 *
 * Children run in their own process group: a Ctrl-C in the terminal reaches only
 * `cairn dev`, which then stops the engine before the storage nodes it flushes to.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import type { Logger } from '../../../core/logger.js'
import type { Startable } from '../../../core/startable.js'
import { CairnError } from '../../../core/errors.js'
import { childEnvironment } from '../../../core/config.js'

/** A child did not become ready in time, or exited before it was. */
export class ChildStartError extends CairnError {
  override readonly name = 'ChildStartError'
  readonly kind = 'unavailable'
}

export type ChildState = 'starting' | 'up' | 'backoff' | 'stopping' | 'stopped' | 'killed'

export interface SupervisorInit<R> {
  /** Name in logs and on the status page. */
  name: string
  command: string
  /** Arguments for each spawn; called again before every restart. */
  args: () => readonly string[]
  /** Variables set in the child's environment on top of this process's. @default none */
  env?: Readonly<Record<string, string>>
  /** Open an IPC channel to the child (it reports readiness and notices when this process dies). @default false */
  ipc?: boolean
  /** Runs before every spawn (first start, restart, resume), e.g. to publish the child's identity; a failure is logged and the spawn goes ahead. @default none */
  beforeSpawn?: () => Promise<void>
  /** Resolves with what the child reports once it serves; called once per spawn. */
  ready: (child: ChildProcess, signal: AbortSignal) => Promise<R>
  /** @default 60000 */
  readyTimeoutMs?: number
  /**
   * How many spawns in a row may exit (or miss readyTimeoutMs) before `start()` gives up:
   * a child that cannot start (its port taken, its data dir unwritable) fails the start
   * instead of being restarted forever while nothing serves. Restarts after the child was
   * once ready are not limited. @default 3
   */
  startAttempts?: number
  /** First restart delay; doubles per consecutive failure. @default 200 */
  backoffInitialMs?: number
  /** @default 5000 */
  backoffMaxMs?: number
  /** A child that stayed up this long resets the backoff. @default 10000 */
  backoffResetMs?: number
  /** SIGTERM to SIGKILL. @default 30000 */
  stopGraceMs?: number
}

export interface SupervisorComponents {
  logger: Logger
  /** Called on every state change (the dev state file and status page follow it). */
  onChange?: () => void
}

export class Supervisor<R> implements Startable {
  state: ChildState = 'stopped'
  /** What the child reported when it last became ready. */
  info: R | undefined
  restarts = 0
  private child: ChildProcess | undefined
  private stopping = false
  /** Killed on request and kept down until `resume()`. */
  private held = false
  private failures = 0
  private upSince = 0
  private backoffTimer: NodeJS.Timeout | undefined
  private readyWaiters: Array<{ resolve: (r: R) => void }> = []
  /** Set while `start()` waits for the first ready: how many spawns failed, and how to fail the start. */
  private firstStart: { failures: number; reject: (err: Error) => void } | undefined

  constructor(
    private readonly init: SupervisorInit<R>,
    private readonly components: SupervisorComponents,
  ) {}

  get pid(): number | undefined {
    return this.state === 'killed' || this.state === 'stopped' ? undefined : this.child?.pid
  }

  /**
   * Spawns the child and resolves once it is ready; restarts keep going in the background.
   * @throws ChildStartError when `startAttempts` spawns in a row failed (the child is then left stopped), or on `stop()` before it was ready
   */
  async start(): Promise<void> {
    this.stopping = false
    const first = new Promise<R>((resolve, reject) => {
      const waiter = { resolve }
      this.readyWaiters.push(waiter)
      this.firstStart = {
        failures: 0,
        reject: (err) => {
          this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter)
          reject(err)
        },
      }
    })
    this.launch()
    await first
  }

  /** Fails a pending `start()`, if any. */
  private failStart(err: Error): void {
    const pending = this.firstStart
    this.firstStart = undefined
    pending?.reject(err)
  }

  /** Resolves the next time the child becomes ready (after a restart, for instance). */
  nextReady(): Promise<R> {
    return new Promise((resolve) => this.readyWaiters.push({ resolve }))
  }

  async stop(): Promise<void> {
    this.stopping = true
    clearTimeout(this.backoffTimer)
    this.failStart(new ChildStartError(`${this.init.name} was stopped before it became ready`))
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      this.setState('stopped')
      return
    }
    this.setState('stopping')
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    const killTimer = setTimeout(() => {
      this.components.logger.warn({ child: this.init.name, pid: child.pid }, 'child ignored SIGTERM; killing it')
      child.kill('SIGKILL')
    }, this.init.stopGraceMs ?? 30_000)
    await exited
    clearTimeout(killTimer)
    this.setState('stopped')
  }

  /**
   * Fault injection: sends `signal` (SIGKILL by default) and keeps the child down
   * until `resume()`, so a failure lasts as long as the caller wants.
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.held = true
    clearTimeout(this.backoffTimer)
    const child = this.child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill(signal)
      await exited
    }
    this.setState('killed')
  }

  /** Restarts a child stopped by `kill()`; resolves when it is ready again. */
  async resume(): Promise<void> {
    if (!this.held || this.stopping) return
    this.held = false
    const ready = this.nextReady()
    this.restarts++
    this.launch()
    await ready
  }

  /** Spawns after the beforeSpawn hook, unless a stop or kill came in meanwhile. */
  private launch(): void {
    const hook = this.init.beforeSpawn
    if (hook === undefined) return this.spawnChild()
    void hook()
      .catch((err: unknown) => this.components.logger.warn({ child: this.init.name, err }, 'pre-spawn step failed; starting the child anyway'))
      .then(() => {
        if (!this.stopping && !this.held) this.spawnChild()
      })
  }

  private spawnChild(): void {
    const stdio = this.init.ipc === true ? (['ignore', 'inherit', 'inherit', 'ipc'] as const) : (['ignore', 'inherit', 'inherit'] as const)
    const env = childEnvironment(this.init.env)
    const child = spawn(this.init.command, this.init.args(), { stdio: [...stdio], detached: true, env })
    this.child = child
    this.info = undefined
    this.setState('starting')
    const abort = new AbortController()
    child.once('exit', (code, signal) => {
      abort.abort()
      this.onExit(child, code, signal)
    })
    child.once('error', (err) => this.components.logger.error({ child: this.init.name, err }, 'child process error'))
    void this.awaitReady(child, abort.signal)
  }

  private async awaitReady(child: ChildProcess, signal: AbortSignal): Promise<void> {
    const timeoutMs = this.init.readyTimeoutMs ?? 60_000
    const timeout = AbortSignal.timeout(timeoutMs)
    try {
      const info = await this.init.ready(child, AbortSignal.any([signal, timeout]))
      if (this.child !== child || signal.aborted) return
      this.info = info
      this.upSince = Date.now()
      this.firstStart = undefined
      this.setState('up')
      this.components.logger.info({ child: this.init.name, pid: child.pid, info }, 'child ready')
      for (const w of this.readyWaiters.splice(0)) w.resolve(info)
    } catch (err) {
      if (signal.aborted && !timeout.aborted) return
      this.components.logger.error({ child: this.init.name, pid: child.pid, err, timeoutMs }, 'child did not become ready; killing it')
      child.kill('SIGKILL')
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return
    if (this.stopping || this.held) return
    if (this.firstStart !== undefined && ++this.firstStart.failures >= (this.init.startAttempts ?? 3)) {
      const attempts = this.firstStart.failures
      this.components.logger.error({ child: this.init.name, pid: child.pid, code, signal, attempts }, 'child never became ready; giving up')
      this.setState('stopped')
      this.failStart(new ChildStartError(`${this.init.name} exited ${attempts} times in a row before becoming ready (last: code ${code}, signal ${signal})`))
      return
    }
    const uptimeMs = this.state === 'up' ? Date.now() - this.upSince : 0
    this.failures = uptimeMs >= (this.init.backoffResetMs ?? 10_000) ? 1 : this.failures + 1
    const delayMs = Math.min((this.init.backoffInitialMs ?? 200) * 2 ** (this.failures - 1), this.init.backoffMaxMs ?? 5000)
    this.components.logger.warn({ child: this.init.name, pid: child.pid, code, signal, restartInMs: delayMs }, 'child exited; restarting')
    this.setState('backoff')
    this.backoffTimer = setTimeout(() => {
      if (this.stopping) return
      this.restarts++
      this.launch()
    }, delayMs)
  }

  private setState(state: ChildState): void {
    this.state = state
    this.components.onChange?.()
  }
}

/** Resolves with the first IPC message of type `ready` the child sends. */
export function readyMessage<R>(child: ChildProcess, signal: AbortSignal): Promise<R> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: unknown): void => {
      if (typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === 'ready') {
        cleanup()
        resolve(msg as R)
      }
    }
    const onAbort = (): void => {
      cleanup()
      reject(new ChildStartError('child exited or timed out before reporting ready', { cause: signal.reason }))
    }
    const cleanup = (): void => {
      child.off('message', onMessage)
      signal.removeEventListener('abort', onAbort)
    }
    if (signal.aborted) return onAbort()
    child.on('message', onMessage)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Polls `GET http://address/readyz` every `intervalMs` until it answers 200 (bounded by `signal`). */
export async function readyz(address: string, signal: AbortSignal, intervalMs = 50): Promise<void> {
  for (;;) {
    if (signal.aborted) throw new ChildStartError(`${address} never became ready`, { cause: signal.reason })
    const ok = await fetch(`http://${address}/readyz`, { signal }).then(
      (res) => res.ok,
      () => false,
    )
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
