import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../core/logger.js'
import { createLocalControlPlane } from '../control-plane/local/local-control-plane.js'
import { csiConformance } from './conformance.js'

const TOKEN_TTL_MS = 300_000

csiConformance('local control plane (better-sqlite3 file)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-csi-cp-'))
  let nowMs = Date.parse('2026-01-01T00:00:00Z')
  const cp = createLocalControlPlane({ path: join(dir, 'control-plane.sqlite'), continueTokenTtlMs: TOKEN_TTL_MS }, { logger: silentLogger(), clock: () => nowMs })
  await cp.start()
  return {
    cp,
    cleanup: async () => {
      await cp.stop()
      rmSync(dir, { recursive: true, force: true })
    },
    expireContinueTokens: async () => {
      nowMs += TOKEN_TTL_MS + 1
    },
  }
})
