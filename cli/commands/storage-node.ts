import type { Command } from '../main.js'
import { loadConfig, storageNodeConfigSchema } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { createRegistry } from '../../core/health-server.js'
import { StorageNode } from '../../storage-node/daemon.js'

export const command: Command = {
  summary:
    'run a storage node: cairn storage-node --data-dir DIR --listen ADDR [--metrics-listen ADDR] [--cluster-token-file FILE] [--capacity-fraction F --capacity-min-bytes N --capacity-max-bytes N]',
  async run(argv) {
    const config = loadConfig(storageNodeConfigSchema, argv)
    const logger = createLogger('storage-node', config.logLevel)
    const node = new StorageNode(config, { logger, registry: createRegistry({ component: 'storage-node' }) })
    // Listen before starting: a SIGTERM during startup still gets a clean stop.
    const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'))
      process.once('SIGINT', () => resolve('SIGINT'))
    })
    await node.start()
    const signal = await stopSignal
    logger.info({ signal }, 'shutting down')
    await node.stop()
    logger.info('stopped cleanly')
    logger.flush()
    return 0
  },
}
