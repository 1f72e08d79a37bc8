/** `cairn storage-node` daemons as child processes, for tests that need the storage nodes out of the test's own process. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import type { ClusterMap } from '../../core/cluster-map.js'

const MAIN = fileURLToPath(new URL('../../cli/main.js', import.meta.url))

export interface Daemon {
  child: ChildProcess
  grpcAddress: string
  exited: Promise<unknown>
}

/** Starts a daemon and resolves once it logs that it serves (bounded wait). */
export async function startDaemon(dataDir: string): Promise<Daemon> {
  const args = [MAIN, 'storage-node', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--compaction-interval-ms', '0']
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const stderr: string[] = []
  let timer: NodeJS.Timeout | undefined
  try {
    const grpcAddress = await new Promise<string>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`daemon did not serve within 60 s:\n${stderr.join('\n')}`)), 60_000)
      createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
        stderr.push(line)
        try {
          const entry = JSON.parse(line) as { msg?: string; grpcAddress?: string }
          if (entry.msg === 'storage node serving') resolve(entry.grpcAddress as string)
        } catch {
          // not a log line
        }
      })
      void exited.then(() => reject(new Error(`daemon exited before serving:\n${stderr.join('\n')}`)))
    })
    return { child, grpcAddress, exited }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  } finally {
    clearTimeout(timer)
  }
}

export async function killDaemon(d: Daemon): Promise<void> {
  d.child.kill('SIGKILL')
  await d.exited
}

/** A cluster map of the daemons, one failure domain each. */
export function daemonMap(daemons: readonly Daemon[]): ClusterMap {
  return {
    epoch: 1,
    members: daemons.map((d, i) => ({ id: `node-${i}`, address: d.grpcAddress, peerId: `peer-${i}`, failureDomain: `zone-${i}`, weight: 1, state: 'active' })),
  }
}
