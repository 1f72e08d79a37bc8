import { after } from 'node:test'
import { backendConformance } from '../nbd/backend-conformance.js'
import { createEngineHarness, type EngineHarness } from './testing/harness.js'

const harnesses: EngineHarness[] = []
after(async () => {
  for (const h of harnesses) await h.cleanup()
})

let n = 0
async function fresh(chunkSizeBytes: number) {
  const h = await createEngineHarness({ chunkSizeBytes })
  harnesses.push(h)
  const name = `vol-${n++}`
  await h.createVolume(name, 4 * 1024 * 1024)
  return h.attach(name)
}

backendConformance('volume engine (in-memory fakes, 64 KiB chunks)', () => fresh(65536))
backendConformance('volume engine (in-memory fakes, 4 KiB chunks)', () => fresh(4096))

// The same contract after every change went through the flusher: reads then come from chunks.
backendConformance('volume engine (flushing after every call)', async () => {
  const engine = await fresh(65536)
  const wrap = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      const r = await fn(...a)
      await engine.flushDirty()
      return r
    }
  engine.pwrite = wrap(engine.pwrite.bind(engine))
  engine.trim = wrap(engine.trim.bind(engine))
  engine.zero = wrap(engine.zero.bind(engine))
  return engine
})
