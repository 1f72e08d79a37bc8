import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import type { Volume } from '../control-plane/types.js'
import { AdminVolumeEngines } from './engines.js'

function volume(attachment: Volume['status']['attachment']): Volume {
  return {
    name: 'v1', uid: 'u', revision: '1', creationTime: '2026-01-01T00:00:00Z', blockStore: 'bs', storagePolicy: 'pol', sizeBytes: 4096,
    status: { head: { rootCid: null, sizeBytes: 4096, journalSeq: 0 }, epoch: attachment?.epoch ?? 0, attachment, readers: [], recoveryPending: false, journalReplicas: [], allocatedBytes: 0, health: 'healthy' },
  }
}

/** A loopback port with nothing listening (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('AdminVolumeEngines', () => {
  const attached = volume({ nodeId: 'node-a', epoch: 2, since: '2026-01-01T00:00:00Z' })

  it('does not look for an engine when the volume is not attached', async () => {
    const asked: string[] = []
    const engines = new AdminVolumeEngines(async (nodeId) => {
      asked.push(nodeId)
      return undefined
    })
    await engines.checkpoint(volume(null))
    await engines.resize(volume(null))
    assert.deepEqual(asked, [])
  })

  it('refuses with EngineUnavailableError when an attached volume has no known engine', async () => {
    const engines = new AdminVolumeEngines(async () => undefined)
    await assert.rejects(engines.checkpoint(attached), { name: 'EngineUnavailableError' })
  })

  it('refuses with EngineUnavailableError when the engine it found does not answer', async () => {
    const port = await closedPort()
    const asked: Array<[string, string]> = []
    const engines = new AdminVolumeEngines(async (nodeId, vol) => {
      asked.push([nodeId, vol])
      return `127.0.0.1:${port}`
    }, 2_000)
    await assert.rejects(engines.checkpoint(attached), { name: 'EngineUnavailableError' })
    assert.deepEqual(asked, [['node-a', 'v1']])
  })
})
