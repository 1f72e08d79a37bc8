/**
 * `cairn pin add|rm|ls`: CIDs garbage collection keeps although no volume or
 * snapshot refers to them. A pinned manifest page keeps its whole tree.
 */
import { parseArgs } from 'node:util'
import type { Command } from '../main.js'
import type { Pin } from '../../control-plane/types.js'
import { CliUsageError, formatFromArgv, outputFormat, printTable, runCli } from './dev/client.js'
import { CONTROL_PLANE_FLAGS, openControlPlane } from './gc.js'

const USAGE = {
  add: 'cairn pin add CID [--note TEXT]',
  rm: 'cairn pin rm CID',
  ls: 'cairn pin ls',
} as const
type Sub = keyof typeof USAGE

const COMMON = '[--block-store local] [--data-dir .cairn | --control-plane kubernetes [--kubeconfig PATH]] [--output table|json]'

export const command: Command = {
  summary: `pin chunks against garbage collection: cairn pin ${Object.keys(USAGE).join('|')} ... ${COMMON}`,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === undefined || !(sub in USAGE)) {
      console.error(`usage:\n${Object.values(USAGE).map((u) => `  ${u} ${COMMON}`).join('\n')}`)
      return 2
    }
    return runCli(`pin ${sub}`, formatFromArgv(rest), () => runSub(sub as Sub, rest))
  },
}

async function runSub(sub: Sub, argv: readonly string[]): Promise<void> {
  let parsed
  try {
    parsed = parseArgs({ args: [...argv], options: { ...CONTROL_PLANE_FLAGS, note: { type: 'string' } }, allowPositionals: true, strict: true })
  } catch (err) {
    throw new CliUsageError(`${(err as Error).message}; usage: ${USAGE[sub]}`, { cause: err })
  }
  const { values, positionals } = parsed
  const wanted = sub === 'ls' ? 0 : 1
  if (positionals.length !== wanted) throw new CliUsageError(`expected ${wanted} argument(s), got ${positionals.length}; usage: ${USAGE[sub]}`)
  if (values.note !== undefined && sub !== 'add') throw new CliUsageError(`--note only applies to add; usage: ${USAGE[sub]}`)
  const format = outputFormat(values.output)
  const opened = await openControlPlane(values)
  try {
    const blockStore = values['block-store']
    const cid = positionals[0] as string
    if (sub === 'add') print(format, [await opened.cp.addPin(blockStore, values.note === undefined ? { cid } : { cid, note: values.note })])
    else if (sub === 'rm') {
      await opened.cp.removePin(blockStore, cid)
      if (format === 'json') console.log(JSON.stringify({ removed: cid }))
      else console.log(`unpinned ${cid}`)
    } else print(format, await opened.cp.listPins(blockStore))
  } finally {
    await opened.close()
  }
}

function print(format: 'table' | 'json', pins: readonly Pin[]): void {
  if (format === 'json') return console.log(JSON.stringify(pins))
  printTable(['CID', 'NOTE'], pins.map((p) => [p.cid, p.note ?? '']))
}
