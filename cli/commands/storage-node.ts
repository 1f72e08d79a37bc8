import type { Command } from '../main.js'
import { loadConfig, storageNodeConfigSchema, storageNodeDurability } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { createRegistry } from '../../core/health-server.js'
import { StorageNode } from '../../storage-node/daemon.js'
import { openClusterMaps } from './storage-node-maps.js'
import { releaseParent, serveUntilStopped, stopRequested } from './stop-signal.js'
import { startInOrder } from '../../core/startable.js'

export const command: Command = {
  summary:
    'run a storage node: cairn storage-node --data-dir DIR --listen ADDR [--metrics-listen ADDR] [--cluster-token-file FILE] [--capacity-fraction F --capacity-min-bytes N --capacity-max-bytes N] ' +
    '[--member-id ID --block-store NAME --mesh-listen ADDR --control-plane local|kubernetes [--control-plane-path FILE] --scrub-bytes-per-second N --scrub-interval 24h --repair-bandwidth-bytes-per-second N --repair-interval 1m --repair-settle 60s]',
  async run(argv) {
    const config = loadConfig(storageNodeConfigSchema, argv)
    const durability = storageNodeDurability(config)
    const logger = createLogger('storage-node', config.logLevel)
    const maps = durability === undefined ? undefined : await openClusterMaps(durability, logger)
    const node = new StorageNode(
      {
        ...config,
        ...(durability === undefined
          ? {}
          : {
              durability: {
                memberId: durability.memberId,
                meshListen: durability.meshListen,
                heartbeatIntervalMs: durability.heartbeatIntervalMs,
                scrubBytesPerSecond: durability.scrubBytesPerSecond,
                scrubIntervalMs: durability.scrubIntervalMs,
                repairBandwidthBytesPerSecond: durability.repairBandwidthBytesPerSecond,
                repairIntervalMs: durability.repairIntervalMs,
                repairSettleMs: durability.repairSettleMs,
              },
            }),
      },
      { logger, registry: createRegistry({ component: 'storage-node' }), ...(maps === undefined ? {} : { maps }) },
    )
    const stopSignal = stopRequested()
    try {
      const parts = maps === undefined ? [] : [{ name: 'cluster maps', part: maps }]
      const stop = await startInOrder([...parts, { name: 'storage node', part: node }], logger)
      return await serveUntilStopped(stopSignal, stop, logger)
    } finally {
      // Also after a failed start: listening for 'disconnect' keeps the IPC channel `cairn dev` opened (and so the process) alive.
      releaseParent()
    }
  },
}
