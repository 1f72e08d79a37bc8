import type { Command } from '../main.js'
import { devConfigSchema, loadConfig } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { DevEnvironment } from './dev/environment.js'
import type { DevState } from './dev/state.js'
import { releaseParent, stopRequested } from './stop-signal.js'

export const command: Command = {
  summary:
    'run everything on this machine: cairn dev [--data-dir .cairn] [--data-shards 4 --parity-shards 2] [--size 10GiB] [--listen 127.0.0.1:10809] [--status-listen 127.0.0.1:10810] [--storage-nodes N (>= k+m)] [--member-down-timeout 10m] [--scrub-interval 1h] [--repair-interval 2m] [--repair-settle 60s]',
  async run(argv) {
    const config = loadConfig(devConfigSchema, argv)
    const logger = createLogger('dev', config.logLevel)
    const dev = new DevEnvironment(config, { logger })
    const stopSignal = stopRequested()
    try {
      // A failed start has stopped what it started (DevEnvironment.start) and rejects here.
      const started = dev.start().then(() => 'started' as const)
      const first = await Promise.race([started, stopSignal])
      if (first === 'started') {
        console.log(connectHelp(dev.state()))
        logger.info({ signal: await stopSignal }, 'stopping')
      } else {
        logger.info({ signal: first }, 'signal during startup; stopping')
        await started.catch(() => undefined)
      }
      await dev.stop()
      logger.info('stopped cleanly')
      logger.flush()
      return 0
    } finally {
      // Also after a failed start: listening for 'disconnect' keeps an IPC channel (and so the process) alive.
      releaseParent()
    }
  },
}

/** What a user reads first: where the volume is and how to use it. */
function connectHelp(state: DevState): string {
  const uri = state.nbd.uri
  return [
    `cairn dev: serving ${uri} (${state.nodes.length} storage nodes, data in ${state.dataDir})`,
    `status page: ${state.statusUrl}`,
    '',
    'connect with any NBD client:',
    `  nbdinfo ${uri}`,
    `  qemu-img convert -n -O raw disk.img ${uri}      # write an image into the volume`,
    `  nbdcopy ${uri} copy.img                          # read it back`,
    `  mkdir -p /tmp/cairn && nbdfuse /tmp/cairn/${state.volume} ${uri} &`,
    `  losetup -f --show /tmp/cairn/${state.volume}      # then mkfs.ext4 and mount the loop device`,
    '',
    'manage volumes and snapshots from another terminal:',
    `  cairn volume list --data-dir ${state.dataDir}`,
    `  cairn snapshot create snap-1 --volume ${state.volume} --data-dir ${state.dataDir}`,
    `  cairn node list --data-dir ${state.dataDir}`,
    '',
    'stop with Ctrl-C; state persists in the data directory.',
  ].join('\n')
}
