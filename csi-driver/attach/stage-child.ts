/**
 * Test infrastructure: a node plugin in its own process, so a test can SIGKILL it in
 * the middle of NodeStage. argv: STATE_DIR DATA_DIR CLI_MAIN VOLUME STAGING_PATH STOP_AT_STEP.
 * It prints `step <name>` as staging progresses and, at STOP_AT_STEP, waits to be killed.
 */
import { silentLogger } from '../../core/logger.js'
import { createNodeService } from '../node-service.js'

const [stateDir, dataDir, cliMain, volumeId, stagingPath, stopAt] = process.argv.slice(2) as [string, string, string, string, string, string]
const service = createNodeService({
  nodeId: 'crash-node',
  stateDir,
  engine: { argsPrefix: [cliMain], dataDir, logLevel: 'warn' },
  attachMode: 'fuse',
  logger: silentLogger(),
  onStageStep: async (_volume, step) => {
    process.stdout.write(`step ${step}\n`)
    // Never resolves: the parent kills this process here, mid-stage.
    if (step === stopAt) await new Promise(() => undefined)
  },
})
await service.start()
await service.nodeStageVolume({
  volumeId,
  stagingTargetPath: stagingPath,
  publishContext: {},
  secrets: {},
  volumeContext: {},
  volumeCapability: { accessMode: 'SINGLE_NODE_WRITER', accessType: { kind: 'mount', fsType: 'ext4', mountFlags: [], volumeMountGroup: '' } },
})
process.stdout.write('staged\n')
