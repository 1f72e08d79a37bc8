/**
 * The one way the node plugin runs an external tool (mount, losetup, mkfs, blkid…):
 * an argument array (never a shell), a deadline, bounded captured output, and a
 * typed error that carries the tool's exit code and stderr.
 */
import { execFile } from 'node:child_process'
import { CairnError } from '../../core/errors.js'

/** A tool exited non-zero, was killed by its deadline, or could not be started. */
export class CommandFailedError extends CairnError {
  override readonly name = 'CommandFailedError'
  readonly kind = 'internal'
  constructor(
    message: string,
    readonly file: string,
    readonly args: readonly string[],
    /** Exit code; null when the tool could not start or was killed. */
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface CommandResult {
  exitCode: number
  stdout: string
  stderr: string
}

export interface RunOptions {
  /** @default 60000 */
  timeoutMs?: number
  /** Exit codes that are answers, not failures (blkid exits 2 for "nothing found"). @default [0] */
  okExitCodes?: readonly number[]
}

/** Most bytes kept from a tool's stdout or stderr. */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024
/** Most bytes of stderr quoted in an error message. */
const STDERR_IN_MESSAGE_CHARS = 2000

/** Runs `file args…` and resolves with its output, or throws CommandFailedError. */
export function runCommand(file: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 60_000
  const ok = options.okExitCodes ?? [0]
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const exitCode = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      if (exitCode !== null && ok.includes(exitCode)) {
        resolve({ exitCode, stdout, stderr })
        return
      }
      const why = exitCode === null ? (err?.killed === true ? `killed after ${timeoutMs} ms` : `could not run (${err?.message ?? 'unknown'})`) : `exited ${exitCode}`
      const quoted = stderr.trim().slice(-STDERR_IN_MESSAGE_CHARS)
      reject(new CommandFailedError(`${file} ${args.join(' ')} ${why}${quoted === '' ? '' : `: ${quoted}`}`, file, args, exitCode, stderr, { cause: err }))
    })
  })
}
