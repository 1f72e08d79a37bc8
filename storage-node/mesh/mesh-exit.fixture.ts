/**
 * Child process for storage-mesh.test.ts: two meshes heartbeat each other until both
 * see the other alive, then both stop, and main returns without process.exit(). The
 * process must then end on its own: anything the meshes leave running after stop()
 * (a timer, a stream) keeps it alive, which is what the parent checks. The call
 * timeout is long so that a leftover idle timer would hold the process for a minute.
 */
import { startTestMeshCluster, stopTestMeshNodes, waitFor } from './test-cluster.js'

async function main(): Promise<void> {
  const nodes = await startTestMeshCluster(['a', 'b'], { heartbeatIntervalMs: 50, aliveWindowMs: 3000, callTimeoutMs: 60_000 })
  await waitFor('both members alive to each other', () => nodes.every((n) => nodes.every((m) => n.mesh.isAlive(m.id))))
  await stopTestMeshNodes(nodes)
  process.stdout.write('stopped\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
