/**
 * `cairn snapshot create|list|delete` against the control plane in --data-dir. A
 * snapshot of an attached volume is taken by the engine holding it, after folding
 * every acknowledged write into the head.
 */
import type { Command } from '../main.js'
import type { Snapshot } from '../../control-plane/types.js'
import { CliUsageError, engineFor, formatFromArgv, openContext, outputFormat, parseCli, printTable, runCli, type CliContext } from './dev/client.js'

const USAGE = {
  create: 'cairn snapshot create NAME --volume VOLUME',
  list: 'cairn snapshot list [--volume VOLUME]',
  delete: 'cairn snapshot delete NAME',
} as const
type Sub = keyof typeof USAGE

const COMMON = '[--data-dir .cairn] [--engine HOST:PORT] [--output table|json]'

export const command: Command = {
  summary: `manage snapshots: cairn snapshot ${Object.keys(USAGE).join('|')} ... ${COMMON}`,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === undefined || !(sub in USAGE)) {
      console.error(`usage:\n${Object.values(USAGE).map((u) => `  ${u} ${COMMON}`).join('\n')}`)
      return 2
    }
    return runCli(`snapshot ${sub}`, formatFromArgv(rest), () => runSub(sub as Sub, rest))
  },
}

async function runSub(sub: Sub, argv: readonly string[]): Promise<void> {
  const { values, positionals } = parseCli(argv, { volume: undefined }, sub === 'list' ? 0 : 1, USAGE[sub])
  const format = outputFormat(values.output)
  const ctx = await openContext(values['data-dir'] as string, values.engine)
  try {
    print(format, await act(ctx, sub, positionals[0] as string, values.volume))
  } finally {
    await ctx.close()
  }
}

async function act(ctx: CliContext, sub: Sub, name: string, volume: string | undefined): Promise<Snapshot | Snapshot[] | { deleted: string }> {
  switch (sub) {
    case 'create': {
      if (volume === undefined) throw new CliUsageError(`--volume is required; usage: ${USAGE.create}`)
      const admin = engineFor(ctx, await ctx.cp.getVolume(volume), 'snapshot')
      return admin === undefined ? ctx.cp.createSnapshot({ name, volume }) : admin.snapshot(volume, name)
    }
    case 'list':
      return listAll(ctx, volume)
    case 'delete':
      if (volume !== undefined) throw new CliUsageError(`--volume does not apply to delete; usage: ${USAGE.delete}`)
      await ctx.cp.deleteSnapshot(name)
      return { deleted: name }
  }
}

async function listAll(ctx: CliContext, volume: string | undefined): Promise<Snapshot[]> {
  const out: Snapshot[] = []
  let token: string | undefined
  do {
    const page = await ctx.cp.listSnapshots({ limit: 500, continue: token, volume })
    out.push(...page.items)
    token = page.continue
  } while (token !== undefined)
  return out
}

function print(format: 'table' | 'json', result: Snapshot | Snapshot[] | { deleted: string }): void {
  if (format === 'json') return console.log(JSON.stringify(result))
  if ('deleted' in result) return console.log(`snapshot ${result.deleted} deleted`)
  const rows = (Array.isArray(result) ? result : [result]).map((s) => [
    s.name,
    s.volume,
    String(s.status.sizeBytes),
    String(s.status.readyToUse),
    s.status.creationTime,
    s.status.rootCid ?? '-',
  ])
  printTable(['NAME', 'VOLUME', 'SIZE_BYTES', 'READY', 'CREATED', 'ROOT'], rows)
}
