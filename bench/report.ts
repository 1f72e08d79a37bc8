/**
 * Benchmark results: one JSON object per line on stdout, or a readable table.
 * Every result carries the settings it was measured with, so a line read alone
 * says what it means.
 */
export interface BenchResult {
  /** Stable metric name, e.g. `rs.encode.4+2.64KiB`. */
  name: string
  value: number
  /** e.g. `GB/s`, `shards/s`, `ratio`. */
  unit: string
  /** The settings and context of this measurement. */
  settings?: Record<string, string | number | boolean>
}

export interface BenchOptions {
  /** Scale factor for run length; tests use a small one. @default 1 */
  scale: number
  /** Scratch directory for on-disk benchmarks. */
  workDir: string
  /** `bench nbd`: size of the volume filled before the snapshot is timed. @default follows scale (10 GiB at 1) */
  snapshotVolumeGiB?: number
  /** `bench shard-store`: shards already in the store when each round starts, so the per-row index cost of a full node shows. @default 0 */
  prefillShards?: number
}

/** A benchmark suite: yields results as they are measured. */
export type BenchSuite = (options: BenchOptions) => AsyncIterable<BenchResult>

export function formatJsonLine(result: BenchResult): string {
  return JSON.stringify({ name: result.name, value: round(result.value), unit: result.unit, ...result.settings })
}

export function formatTable(results: readonly BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    String(round(r.value)),
    r.unit,
    Object.entries(r.settings ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
  ])
  const header = ['name', 'value', 'unit', 'settings']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join('  ').trimEnd()
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

function round(value: number): number {
  return Math.abs(value) >= 100 ? Math.round(value * 10) / 10 : Math.round(value * 1000) / 1000
}
