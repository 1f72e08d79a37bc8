/**
 * How a long-running `cairn` process learns it should stop. Besides SIGTERM and SIGINT, a
 * process spawned with an IPC channel (the engine and storage nodes by `cairn dev`, `cairn
 * dev` by the end-to-end harness) stops when that channel closes: the parent died, even by
 * SIGKILL, and nothing else would stop its children. A process without a channel (started
 * from a shell, a container, the CSI launcher) never sees a disconnect.
 */

import type { Logger } from '../../core/logger.js'

/** Resolves with the reason to stop. Call it before starting, so a signal during startup still stops cleanly. */
export function stopRequested(): Promise<string> {
  return new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
    // Only with a channel: a listener would keep one open, and without one there is nothing to hear.
    if (process.connected) process.once('disconnect', () => resolve('parent disconnected'))
  })
}

/**
 * The end of every daemon's run: waits for the stop request, logs it with `message`,
 * stops (also if waiting threw), logs the clean stop, flushes the log and releases the IPC
 * channel, if any. @returns the exit code, 0
 */
export async function serveUntilStopped(stopSignal: Promise<string>, stop: () => Promise<void>, logger: Logger, message = 'shutting down'): Promise<number> {
  try {
    logger.info({ signal: await stopSignal }, message)
  } finally {
    await stop()
  }
  logger.info('stopped cleanly')
  logger.flush()
  releaseParent()
  return 0
}

/** Closes the IPC channel, if any: an open one would keep a cleanly stopped process alive. */
export function releaseParent(): void {
  if (process.connected) process.disconnect()
}
