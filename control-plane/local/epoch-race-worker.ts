/**
 * A child process for the cross-process epoch race test: it opens the Local control
 * plane on the file named in argv, then for every line `<expectedEpoch>` read from
 * stdin calls acquireEpoch once and answers one JSON line: `{won, epoch}` or
 * `{won: false, error}`. The parent releases both workers with the same line at once,
 * so their transactions genuinely contend for SQLite's write lock.
 */
import { createInterface } from 'node:readline'
import { silentLogger } from '../../core/logger.js'
import { createLocalControlPlane } from './local-control-plane.js'

async function main(): Promise<void> {
  const [path, volume, nodeId] = process.argv.slice(2)
  if (path === undefined || volume === undefined || nodeId === undefined) {
    throw new Error('usage: epoch-race-worker <sqlite path> <volume> <node id>')
  }
  const cp = createLocalControlPlane({ path, busyTimeoutMs: 10_000 }, { logger: silentLogger() })
  await cp.start()
  process.stdout.write(JSON.stringify({ ready: true }) + '\n')
  for await (const line of createInterface({ input: process.stdin })) {
    try {
      const v = await cp.acquireEpoch(volume, nodeId, Number(line))
      process.stdout.write(JSON.stringify({ won: true, epoch: v.status.epoch }) + '\n')
    } catch (err) {
      process.stdout.write(JSON.stringify({ won: false, error: (err as Error).name }) + '\n')
    }
  }
  await cp.stop()
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
