/**
 * What `cairn volume` and `cairn snapshot` share: the control plane in `--data-dir`,
 * the running engine's admin API (found through dev.json or `--engine`), output in
 * a table or JSON, and errors printed once with an exit code per kind.
 *
 * An operation on an attached volume that must see every acknowledged write
 * (snapshot, clone, resize, delete) goes through the engine holding it; if that
 * engine is not reachable the command refuses rather than act on a stale head.
 */
import { access } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { resolve as resolvePath } from 'node:path'
import { CairnError, errorKind } from '../../../core/errors.js'
import { silentLogger } from '../../../core/logger.js'
import { LocalControlPlane } from '../../../control-plane/local/local-control-plane.js'
import { FailedPreconditionError, type Volume } from '../../../control-plane/types.js'
import { AdminApiError, AdminClient } from '../../../engine/host/index.js'
import { RemoteError } from '../../../core/grpc.js'
import { devPaths, readDevState } from './state.js'

/** No control plane exists in the data directory. */
export class NoControlPlaneError extends CairnError {
  override readonly name = 'NoControlPlaneError'
  readonly kind = 'not-found'
}

export interface CliContext {
  cp: LocalControlPlane
  /** The engine admin API, when an engine is known (dev.json or --engine). */
  admin: AdminClient | undefined
  /** Who that engine attaches as (dev.json), to tell our attachments from another engine's. */
  engineNodeId: string | undefined
  close(): Promise<void>
}

export async function openContext(dataDirFlag: string, engineFlag: string | undefined): Promise<CliContext> {
  const dataDir = resolvePath(dataDirFlag)
  const path = devPaths(dataDir).controlPlane
  // Opening a missing file would create an empty control plane: a typo in --data-dir must not do that.
  await access(path).catch((err: unknown) => {
    throw new NoControlPlaneError(`no control plane at ${path}; run 'cairn dev --data-dir ${dataDirFlag}' first`, { cause: err })
  })
  const cp = new LocalControlPlane({ path }, { logger: silentLogger() })
  await cp.start()
  const dev = engineFlag === undefined ? await readDevState(dataDir) : undefined
  const adminAddress = engineFlag ?? dev?.engine.adminAddress ?? undefined
  return {
    cp,
    admin: adminAddress === undefined ? undefined : new AdminClient({ address: adminAddress }),
    engineNodeId: dev?.engine.nodeId,
    close: () => cp.stop(),
  }
}

/**
 * The admin client if `volume` is attached and must be handled by its engine; undefined
 * when the control plane alone is correct (the volume is not attached).
 * @throws FailedPreconditionError when it is attached but no engine is reachable.
 */
export function engineFor(ctx: CliContext, volume: Volume, operation: string): AdminClient | undefined {
  const attachment = volume.status.attachment
  if (attachment === null) return undefined
  if (ctx.admin === undefined) {
    throw new FailedPreconditionError(
      `volume ${volume.name} is attached to ${attachment.nodeId} (epoch ${attachment.epoch}) and no running engine is known; ` +
        `start 'cairn dev' or pass --engine HOST:PORT so the ${operation} includes every acknowledged write`,
    )
  }
  if (ctx.engineNodeId !== undefined && attachment.nodeId !== ctx.engineNodeId) {
    throw new FailedPreconditionError(`volume ${volume.name} is attached to ${attachment.nodeId}, not to this dev's engine (${ctx.engineNodeId}); ${operation} it there`)
  }
  return ctx.admin
}

export type OutputFormat = 'table' | 'json'

export function outputFormat(value: string | undefined): OutputFormat {
  if (value === undefined || value === 'table') return 'table'
  if (value === 'json') return 'json'
  throw new CliUsageError(`--output must be table or json, got ${JSON.stringify(value)}`)
}

/**
 * The output format asked for, read before full parsing so that even a usage error is
 * reported in JSON to a script that asked for JSON. Anything unreadable means table.
 */
export function formatFromArgv(argv: readonly string[]): OutputFormat {
  const i = argv.indexOf('--output')
  const value = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--output='))?.slice('--output='.length)
  return value === 'json' ? 'json' : 'table'
}

/** A command line that cannot be run as given. */
export class CliUsageError extends CairnError {
  override readonly name = 'CliUsageError'
  readonly kind = 'invalid-argument'
}

/** String flags of a subcommand: name → default (undefined: no default). */
export type StringFlags = Readonly<Record<string, string | undefined>>

/** Parses `argv` for a subcommand; a bad flag or a wrong number of positionals is a CliUsageError. */
export function parseCli(
  argv: readonly string[],
  flags: StringFlags,
  positionalsNeeded: number,
  usage: string,
): { values: Record<string, string | undefined>; positionals: string[] } {
  const options: Record<string, { type: 'string'; default?: string }> = {}
  for (const [name, fallback] of Object.entries({ ...COMMON_FLAGS, ...flags })) {
    options[name] = fallback === undefined ? { type: 'string' } : { type: 'string', default: fallback }
  }
  let parsed
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (err) {
    throw new CliUsageError(`${(err as Error).message}; usage: ${usage}`, { cause: err })
  }
  if (parsed.positionals.length !== positionalsNeeded) {
    throw new CliUsageError(`expected ${positionalsNeeded} argument(s), got ${parsed.positionals.length}; usage: ${usage}`)
  }
  return { values: parsed.values as Record<string, string | undefined>, positionals: parsed.positionals }
}

/** Flags every volume and snapshot subcommand takes. */
export const COMMON_FLAGS: StringFlags = { 'data-dir': '.cairn', engine: undefined, output: 'table' }

/** Prints rows as aligned columns. */
export function printTable(headers: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  console.log([line(headers), ...rows.map(line)].join('\n'))
}

/**
 * Runs a CLI action: prints a Cairn error once (as JSON on stdout with --output json,
 * else one line on stderr) and returns the exit code: 2 for bad input, 1 otherwise.
 */
export async function runCli(command: string, format: OutputFormat, action: () => Promise<void>): Promise<number> {
  try {
    await action()
    return 0
  } catch (err) {
    if (!(err instanceof CairnError)) throw err
    const name = err instanceof AdminApiError ? err.remoteName : err instanceof RemoteError ? (err.remoteName ?? err.name) : err.name
    if (format === 'json') console.log(JSON.stringify({ error: { name, kind: err.kind, message: err.message } }))
    else console.error(`cairn ${command}: ${err.message}`)
    return errorKind(err) === 'invalid-argument' ? 2 : 1
  }
}
