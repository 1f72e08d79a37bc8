/**
 * Child process for the SIGKILL test in segment-store.test.ts: puts batches of shards
 * into a store on argv[2] forever, with the index worker flushing often, and prints
 * "acked <n>" after batch n's put resolved. The parent kills it without warning.
 */
import { silentLogger } from '../core/logger.js'
import { createSegmentShardStore } from './segment-store.js'
import { fixtureShard } from './fixtures.js'

/** The shards of batch `n`; the parent rebuilds the same ones to check them. */
export function killTestBatch(n: number): ReturnType<typeof fixtureShard>[] {
  return Array.from({ length: 8 }, (_, i) => fixtureShard(n * 8 + i, i % 6, 1024))
}

async function main(dataDir: string): Promise<void> {
  // Small flushes and segments: worker commits and segment rolls are always close by.
  const store = createSegmentShardStore({ dataDir, compactionIntervalMs: 0, indexFlushRecords: 16, segmentSizeBytes: 256 * 1024 }, { logger: silentLogger() })
  await store.start()
  for (let n = 0; ; n++) {
    await store.putShards(killTestBatch(n))
    process.stdout.write(`acked ${n}\n`)
  }
}

if (process.argv[2] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv[2]).catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
