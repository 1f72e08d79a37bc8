/**
 * A daemon whose start fails must exit non-zero by itself: cli/main.ts only sets the exit
 * code, so any part left running (a health server answering 200, an IPC channel, a child
 * process) would keep a process alive that serves nothing, and a liveness probe or a
 * supervisor would never restart it. Each test provokes a real failure after some parts
 * have started and kills the process only if it is still alive after a generous bound.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type StdioOptions } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalControlPlane } from '../../control-plane/local/local-control-plane.js'
import { silentLogger } from '../../core/logger.js'

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url))
/** Far above a failed start (a few seconds); reaching it means the process would have lived on. */
const EXIT_BOUND_MS = 60_000

interface Exit {
  code: number | null
  killed: boolean
  stderr: string
}

/** Runs `cairn <args>` and resolves when it exits, or kills it after EXIT_BOUND_MS. */
async function runUntilExit(args: readonly string[], ipc = false): Promise<Exit> {
  const stdio: StdioOptions = ipc ? ['ignore', 'ignore', 'pipe', 'ipc'] : ['ignore', 'ignore', 'pipe']
  const child = spawn(process.execPath, [MAIN, ...args], { stdio })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    // Only the tail is kept: enough to tell why, on failure.
    stderr = (stderr + chunk.toString()).slice(-4000)
  })
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    child.kill('SIGKILL')
  }, EXIT_BOUND_MS)
  try {
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    return { code, killed, stderr }
  } finally {
    clearTimeout(timer)
  }
}

function assertExitedNonZero(exit: Exit): void {
  assert.equal(exit.killed, false, `still alive after ${EXIT_BOUND_MS} ms; had to be killed. stderr tail:\n${exit.stderr}`)
  assert.notEqual(exit.code, 0, `exited 0 although its start failed. stderr tail:\n${exit.stderr}`)
  assert.notEqual(exit.code, null)
}

/** A TCP listener on a loopback port, so a daemon told to listen there fails with EADDRINUSE. */
async function takenPort(onConnection: (socket: import('node:net').Socket) => void = (s) => s.destroy()): Promise<{ address: string; server: Server }> {
  const server = createServer(onConnection)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  assert.ok(address !== null && typeof address === 'object')
  return { address: `127.0.0.1:${address.port}`, server }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-start-failure-'))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** A Local control plane with the block store an engine serves, as `cairn dev` leaves it. */
async function localControlPlane(dir: string): Promise<void> {
  const cp = new LocalControlPlane({ path: join(dir, 'control-plane.sqlite') }, { logger: silentLogger() })
  await cp.start()
  try {
    await cp.createBlockStore({ name: 'local', hostPath: join(dir, 'nodes'), failureDomainKey: 'cairn.dev/node' })
  } finally {
    await cp.stop()
  }
}

test('an operator whose API server cannot be reached exits non-zero instead of answering /healthz while reconciling nothing', async () => {
  await withDir(async (dir) => {
    // The "API server" accepts and drops every connection: the control plane's start fails after the health server started.
    const apiServer = await takenPort()
    try {
      const kubeconfig = join(dir, 'kubeconfig')
      await writeFile(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          `clusters: [{name: c, cluster: {server: "https://${apiServer.address}", insecure-skip-tls-verify: true}}]`,
          'users: [{name: u, user: {token: t}}]',
          'contexts: [{name: x, context: {cluster: c, user: u}}]',
          'current-context: x',
          '',
        ].join('\n'),
      )
      assertExitedNonZero(await runUntilExit(['operator', '--kubeconfig', kubeconfig, '--metrics-listen', '127.0.0.1:0']))
    } finally {
      apiServer.server.close()
    }
  })
})

test('an engine spawned with an IPC channel (as cairn dev spawns it) whose metrics port is taken exits non-zero', async () => {
  await withDir(async (dir) => {
    await localControlPlane(dir)
    const metrics = await takenPort()
    try {
      // Control plane, runtime, host and NBD start; the HTTP server, last, fails with EADDRINUSE.
      const args = ['engine', '--data-dir', dir, '--listen', '127.0.0.1:0', '--metrics-listen', metrics.address]
      assertExitedNonZero(await runUntilExit(args, true))
    } finally {
      metrics.server.close()
    }
  })
})

test('a storage node spawned with an IPC channel (as cairn dev spawns it) whose data dir cannot be made exits non-zero', async () => {
  await withDir(async (dir) => {
    // A regular file where the data dir's parent should be: mkdir fails with ENOTDIR after the health server started.
    const blocker = join(dir, 'file')
    await writeFile(blocker, '')
    const args = ['storage-node', '--data-dir', join(blocker, 'data'), '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0']
    assertExitedNonZero(await runUntilExit(args, true))
  })
})

test('a CSI driver whose metrics port is taken exits non-zero after stopping its control plane and CSI socket', async () => {
  await withDir(async (dir) => {
    await localControlPlane(dir)
    const metrics = await takenPort()
    try {
      const args = ['csi', '--mode', 'controller', '--control-plane', 'local', '--data-dir', dir, '--endpoint', `unix://${join(dir, 'csi.sock')}`, '--metrics-listen', metrics.address]
      assertExitedNonZero(await runUntilExit(args))
    } finally {
      metrics.server.close()
    }
  })
})

/** Pids of processes whose command line names `dir` (children a failed start would have left behind). */
async function processesNaming(dir: string): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(dir)) pids.push(Number(entry))
  }
  return pids
}

test('cairn dev whose engine can never start (its NBD port taken) stops the storage node it started and exits non-zero', async () => {
  await withDir(async (dir) => {
    const nbd = await takenPort()
    try {
      // One storage node starts and serves; the engine then fails with EADDRINUSE on every attempt.
      // Spawned with an IPC channel, as the end-to-end harness spawns it.
      const args = ['dev', '--data-dir', join(dir, 'dev'), '--listen', nbd.address, '--status-listen', '127.0.0.1:0', '--data-shards', '1', '--parity-shards', '0']
      assertExitedNonZero(await runUntilExit(args, true))
      assert.deepEqual(await processesNaming(join(dir, 'dev')), [], 'no child of the failed dev is left running')
    } finally {
      nbd.server.close()
    }
  })
})
