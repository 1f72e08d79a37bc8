/**
 * A `cairn dev` that dies, even by SIGKILL, takes its engine and storage nodes with it:
 * they hold an IPC channel to it and stop when it closes. Without that, a test runner's
 * timeout (which kills the test process, and with it the harness's dev) left the whole
 * cluster running and loading the machine for every test after it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { processAlive } from '../csi-driver/attach/process.js'
import { ENGINE_MALLOC_ENV } from '../engine/host/malloc-env.js'
import { STORAGE_NODE_RUNTIME_FLAGS } from '../storage-node/runtime-flags.js'
import { Dev, waitUntil } from './harness.js'

test('SIGKILL of cairn dev stops its engine and every storage node (and the engine runs with its malloc settings, the nodes with their runtime flags)', { timeout: 180_000 }, async () => {
  const dev = await Dev.start({ size: '64MiB', dataShards: 2, parityShards: 1 })
  try {
    const state = await dev.waitEngineUp()
    const children = [state.engine.pid, ...state.nodes.map((n) => n.pid)].filter((p): p is number => p !== null)
    assert.equal(children.length, 1 + state.nodes.length, 'every child has a pid')
    for (const pid of children) assert.ok(processAlive(pid), `child ${pid} runs before the kill`)
    // The engine runs with the malloc settings its memory bound relies on (engine/host/malloc-env.ts).
    const environ = (await readFile(`/proc/${state.engine.pid}/environ`, 'utf8')).split('\0')
    for (const [name, value] of Object.entries(ENGINE_MALLOC_ENV)) assert.ok(environ.includes(`${name}=${value}`), `engine environment has ${name}=${value}`)
    // Each storage node runs with the heap floor its read path's CPU relies on (storage-node/runtime-flags.ts).
    for (const node of state.nodes) {
      const argv = (await readFile(`/proc/${node.pid}/cmdline`, 'utf8')).split('\0')
      const cli = argv.findIndex((a) => a.endsWith('main.js'))
      for (const flag of STORAGE_NODE_RUNTIME_FLAGS) {
        const at = argv.indexOf(flag)
        assert.ok(at >= 1 && at < cli, `node ${node.pid} runs with ${flag} before the CLI: ${argv.join(' ')}`)
      }
    }
    dev.child.kill('SIGKILL')
    await waitUntil(
      () => children.every((pid) => !processAlive(pid)),
      60_000,
      'the children of a killed cairn dev to stop',
    )
  } finally {
    await dev.destroy()
  }
})
