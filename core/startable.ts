import type { Logger } from './logger.js'

/** A long-lived component: `main` wires and starts it, and stops it on SIGTERM. */
export interface Startable {
  start(): Promise<void>
  /** Idempotent; resolves once every resource the component holds is released. */
  stop(): Promise<void>
}

/*
 * Starting a daemon's parts so that a failed start leaves nothing running. A part that
 * keeps a handle open (an HTTP listener answering /healthz 200, a watch, a timer) after a
 * later part failed keeps the process alive: cli/main.ts only sets the exit code, so the
 * process would serve nothing while a liveness probe sees it healthy and never restarts it.
 */

/** One part of a daemon, named for the log line when stopping it fails. */
export interface NamedPart {
  name: string
  part: Startable
}

/**
 * Starts `parts` in order. If one fails, the parts already started are stopped in reverse
 * (a failure to stop one is logged and the others are still stopped) and the start error
 * is rethrown. Resolves with a function that stops every part in reverse, once, and
 * rejects with the first stop error after trying them all.
 */
export async function startInOrder(parts: readonly NamedPart[], logger: Logger): Promise<() => Promise<void>> {
  const started: NamedPart[] = []
  try {
    for (const named of parts) {
      await named.part.start()
      started.push(named)
    }
  } catch (err) {
    // The start error is the one to report; a stop error here is only logged.
    await stopInReverse(started, logger)
    throw err
  }
  return async () => {
    const failures = await stopInReverse(started, logger)
    if (failures.length > 0) throw failures[0]
  }
}

/** Stops what started, last first, and returns the errors; emptied first so a second call stops nothing twice. */
async function stopInReverse(started: NamedPart[], logger: Logger): Promise<unknown[]> {
  const failures: unknown[] = []
  for (const { name, part } of started.splice(0).reverse()) {
    await part.stop().catch((err: unknown) => {
      logger.warn({ err, part: name }, 'stopping a part failed; stopping the others')
      failures.push(err)
    })
  }
  return failures
}
