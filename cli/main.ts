#!/usr/bin/env node
/**
 * `cairn`: one binary, one subcommand per component. Subcommands load lazily so
 * that `cairn bench` never pays for the gRPC stack and `cairn storage-node` never
 * loads the benchmarks.
 */
import { CairnError } from '../core/errors.js'

export interface Command {
  /** One line for `cairn help`. */
  summary: string
  /** Runs the command; resolves to the process exit code. */
  run(argv: string[]): Promise<number>
}

const commands: Record<string, () => Promise<Command>> = {
  bench: async () => (await import('./commands/bench.js')).command,
  'storage-node': async () => (await import('./commands/storage-node.js')).command,
  dev: async () => (await import('./commands/dev.js')).command,
  engine: async () => (await import('./commands/engine.js')).command,
  volume: async () => (await import('./commands/volume.js')).command,
  snapshot: async () => (await import('./commands/snapshot.js')).command,
  operator: async () => (await import('./commands/operator.js')).command,
  csi: async () => (await import('./commands/csi.js')).command,
  gc: async () => (await import('./commands/gc.js')).command,
  pin: async () => (await import('./commands/pin.js')).command,
  node: async () => (await import('./commands/node.js')).command,
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    await printHelp()
    return name === undefined ? 2 : 0
  }
  if (name === 'version' || name === '--version') {
    console.log(await version())
    return 0
  }
  const load = commands[name]
  if (load === undefined) {
    console.error(`cairn: unknown command ${JSON.stringify(name)}; see 'cairn help'`)
    return 2
  }
  const command = await load()
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`cairn ${name}: ${command.summary}`)
    return 0
  }
  try {
    return await command.run(rest)
  } catch (err) {
    // node:util parseArgs rejects unknown or malformed flags with a TypeError carrying this code.
    if (isUsageError(err)) {
      console.error(`cairn ${name}: ${(err as Error).message}\ncairn ${name}: ${command.summary}`)
      return 2
    }
    throw err
  }
}

function isUsageError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')
}

async function printHelp(): Promise<void> {
  const lines = ['usage: cairn <command> [flags]', '', 'commands:']
  for (const [name, load] of Object.entries(commands)) lines.push(`  ${name.padEnd(14)} ${(await load()).summary}`)
  lines.push(`  ${'version'.padEnd(14)} print the version`)
  console.log(lines.join('\n'))
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return `cairn ${pkg.version}`
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    if (err instanceof CairnError && err.kind === 'invalid-argument') {
      console.error(`cairn: ${err.message}`)
      process.exitCode = 2
      return
    }
    console.error(err)
    process.exitCode = 1
  },
)
