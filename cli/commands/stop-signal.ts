/**
 * How a long-running `cairn` process learns it should stop. Besides SIGTERM and SIGINT, a
 * process spawned with an IPC channel (the engine and storage nodes by `cairn dev`, `cairn
 * dev` by the end-to-end harness) stops when that channel closes: the parent died, even by
 * SIGKILL, and nothing else would stop its children. A process without a channel (started
 * from a shell, a container, the CSI launcher) never sees a disconnect.
 */

/** Resolves with the reason to stop. Call it before starting, so a signal during startup still stops cleanly. */
export function stopRequested(): Promise<string> {
  return new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
    process.once('disconnect', () => resolve('parent disconnected'))
  })
}

/** Closes the IPC channel, if any: an open one would keep a cleanly stopped process alive. */
export function releaseParent(): void {
  if (process.connected) process.disconnect()
}
