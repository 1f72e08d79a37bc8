import { parseArgs } from 'node:util'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from '../main.js'
import { formatJsonLine, formatTable, type BenchResult, type BenchSuite } from '../../bench/report.js'
import { InvalidArgumentError } from '../../core/errors.js'

/** Suites by name; each module loads only when asked for. */
const suites: Record<string, () => Promise<BenchSuite>> = {
  codec: async () => (await import('../../bench/codec.js')).codecSuite,
  placement: async () => (await import('../../bench/placement.js')).placementSuite,
  'shard-store': async () => (await import('../../bench/shard-store.js')).shardStoreSuite,
  nbd: async () => (await import('../../bench/nbd.js')).nbdSuite,
  repair: async () => (await import('../../bench/repair.js')).repairSuite,
  gc: async () => (await import('../../bench/gc.js')).gcSuite,
}

export const command: Command = {
  summary: 'run benchmarks: cairn bench <suite> [--table] [--scale N] [--work-dir DIR] [--snapshot-volume-gib N] [--prefill-shards N]',
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        table: { type: 'boolean', default: false },
        scale: { type: 'string', default: '1' },
        'work-dir': { type: 'string' },
        'snapshot-volume-gib': { type: 'string' },
        'prefill-shards': { type: 'string', default: '0' },
      },
    })
    const names = positionals.length > 0 ? positionals : Object.keys(suites)
    const unknown = names.filter((n) => suites[n] === undefined)
    if (unknown.length > 0) {
      throw new InvalidArgumentError(`unknown bench suite ${unknown.join(', ')}; known: ${Object.keys(suites).join(', ')}`)
    }
    const scale = Number(values.scale)
    if (!(scale > 0)) throw new InvalidArgumentError(`--scale must be a positive number, got ${values.scale}`)
    const snapshotVolumeGiB = values['snapshot-volume-gib'] === undefined ? undefined : Number(values['snapshot-volume-gib'])
    if (snapshotVolumeGiB !== undefined && !(snapshotVolumeGiB > 0)) throw new InvalidArgumentError(`--snapshot-volume-gib must be a positive number, got ${values['snapshot-volume-gib']}`)
    const prefillShards = /^\d+$/.test(values['prefill-shards']) ? Number(values['prefill-shards']) : NaN
    if (!Number.isSafeInteger(prefillShards)) throw new InvalidArgumentError(`--prefill-shards must be a non-negative integer, got ${values['prefill-shards']}`)
    const workDir = values['work-dir'] ?? (await mkdtemp(join(tmpdir(), 'cairn-bench-')))
    const results: BenchResult[] = []
    try {
      for (const name of names) {
        const suite = await (suites[name] as () => Promise<BenchSuite>)()
        for await (const result of suite({ scale, workDir, snapshotVolumeGiB, prefillShards })) {
          results.push(result)
          if (!values.table) console.log(formatJsonLine(result))
        }
      }
    } finally {
      if (values['work-dir'] === undefined) await rm(workDir, { recursive: true, force: true })
    }
    if (values.table) console.log(formatTable(results))
    return 0
  },
}
