/**
 * `cairn volume create|list|resize|delete|clone` against the control plane in
 * --data-dir. Resize, delete and clone of an attached volume go through the engine
 * holding it (cli/commands/dev/client.ts says why).
 */
import type { Command } from '../main.js'
import { parseSizeBytes } from '../../core/config.js'
import type { Volume } from '../../control-plane/types.js'
import { CliUsageError, engineFor, formatFromArgv, openContext, outputFormat, parseCli, printTable, runCli, type CliContext } from './dev/client.js'

const USAGE = {
  create: 'cairn volume create NAME --size SIZE [--policy local] [--block-store local]',
  list: 'cairn volume list',
  resize: 'cairn volume resize NAME --size SIZE',
  delete: 'cairn volume delete NAME',
  clone: 'cairn volume clone NAME (--from-volume VOLUME | --from-snapshot SNAPSHOT) [--size SIZE]',
} as const
type Sub = keyof typeof USAGE

const COMMON = '[--data-dir .cairn] [--engine HOST:PORT] [--output table|json]'

export const command: Command = {
  summary: `manage volumes: cairn volume ${Object.keys(USAGE).join('|')} ... ${COMMON}`,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === undefined || !(sub in USAGE)) {
      console.error(`usage:\n${Object.values(USAGE).map((u) => `  ${u} ${COMMON}`).join('\n')}`)
      return 2
    }
    return runCli(`volume ${sub}`, formatFromArgv(rest), () => runSub(sub as Sub, rest))
  },
}

async function runSub(sub: Sub, argv: readonly string[]): Promise<void> {
  const flags = { size: undefined, policy: 'local', 'block-store': 'local', 'from-volume': undefined, 'from-snapshot': undefined }
  const { values, positionals } = parseCli(argv, flags, sub === 'list' ? 0 : 1, USAGE[sub])
  const format = outputFormat(values.output)
  const name = positionals[0] as string
  const ctx = await openContext(values['data-dir'] as string, values.engine)
  try {
    const result = await act(ctx, sub, name, values as unknown as Flags)
    print(format, result)
  } finally {
    await ctx.close()
  }
}

interface Flags {
  size?: string
  policy: string
  'block-store': string
  'from-volume'?: string
  'from-snapshot'?: string
}

async function act(ctx: CliContext, sub: Sub, name: string, flags: Flags): Promise<Volume | Volume[] | { deleted: string }> {
  switch (sub) {
    case 'list':
      return listAll(ctx)
    case 'create':
      return ctx.cp.createVolume({ name, blockStore: flags['block-store'], storagePolicy: flags.policy, sizeBytes: requiredSize(flags.size) })
    case 'resize': {
      const sizeBytes = requiredSize(flags.size)
      const admin = engineFor(ctx, await ctx.cp.getVolume(name), 'resize')
      return admin === undefined ? ctx.cp.resizeVolume(name, sizeBytes) : admin.resize(name, sizeBytes)
    }
    case 'delete':
      return deleteVolume(ctx, name)
    case 'clone':
      return clone(ctx, name, flags)
  }
}

async function deleteVolume(ctx: CliContext, name: string): Promise<{ deleted: string }> {
  // Deleting what does not exist succeeds (idempotence), as in the control plane.
  const volume = await ctx.cp.getVolume(name).catch((err: unknown) => {
    if ((err as Error).name === 'NotFoundError') return undefined
    throw err
  })
  const admin = volume === undefined ? undefined : engineFor(ctx, volume, 'delete')
  if (admin === undefined) await ctx.cp.deleteVolume(name)
  else await admin.deleteVolume(name)
  return { deleted: name }
}

async function clone(ctx: CliContext, name: string, flags: Flags): Promise<Volume> {
  const fromVolume = flags['from-volume']
  const fromSnapshot = flags['from-snapshot']
  if ((fromVolume === undefined) === (fromSnapshot === undefined)) {
    throw new CliUsageError(`give exactly one of --from-volume and --from-snapshot; usage: ${USAGE.clone}`)
  }
  if (fromSnapshot !== undefined) {
    const snap = await ctx.cp.getSnapshot(fromSnapshot)
    const sizeBytes = flags.size === undefined ? snap.status.sizeBytes : parseSizeBytes(flags.size)
    return ctx.cp.createVolume({ name, blockStore: snap.blockStore, storagePolicy: snap.storagePolicy, sizeBytes, source: { snapshot: fromSnapshot } })
  }
  const source = await ctx.cp.getVolume(fromVolume as string)
  if (flags.size !== undefined) throw new CliUsageError('--size applies to --from-snapshot only; a volume clone has its source size (resize it afterwards)')
  const admin = engineFor(ctx, source, 'clone')
  if (admin !== undefined) return admin.clone(source.name, name)
  return ctx.cp.createVolume({ name, blockStore: source.blockStore, storagePolicy: source.storagePolicy, sizeBytes: source.sizeBytes, source: { volume: source.name } })
}

function requiredSize(size: string | undefined): number {
  if (size === undefined) throw new CliUsageError('--size is required, e.g. --size 10GiB')
  return parseSizeBytes(size)
}

async function listAll(ctx: CliContext): Promise<Volume[]> {
  const out: Volume[] = []
  let token: string | undefined
  do {
    const page = await ctx.cp.listVolumes({ limit: 500, continue: token })
    out.push(...page.items)
    token = page.continue
  } while (token !== undefined)
  return out
}

function print(format: 'table' | 'json', result: Volume | Volume[] | { deleted: string }): void {
  if (format === 'json') return console.log(JSON.stringify(result))
  if ('deleted' in result) return console.log(`volume ${result.deleted} deleted`)
  const rows = (Array.isArray(result) ? result : [result]).map((v) => [
    v.name,
    String(v.sizeBytes),
    String(v.status.allocatedBytes),
    v.status.health,
    String(v.status.epoch),
    v.status.attachment?.nodeId ?? '-',
    v.status.readers.length === 0 ? '-' : v.status.readers.join(','),
    // The head may lag the journal of a writer that went away; the next attach replays it.
    v.status.recoveryPending ? 'pending' : '-',
    v.source === undefined ? '-' : 'snapshot' in v.source ? `snapshot/${v.source.snapshot}` : `volume/${v.source.volume}`,
  ])
  printTable(['NAME', 'SIZE_BYTES', 'ALLOCATED_BYTES', 'HEALTH', 'EPOCH', 'ATTACHED_TO', 'READERS', 'RECOVERY', 'SOURCE'], rows)
}
