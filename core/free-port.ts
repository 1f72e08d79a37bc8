/**
 * Picking a TCP port to listen on later (a child process's listen address, saved and
 * reused across restarts).
 */
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'

/** Lowest port `freePort` picks from; below it lie the well-known and registered services. */
const PICKED_PORT_MIN = 10_000
/** Random picks tried before falling back to a port the kernel hands out. */
const PICK_ATTEMPTS_MAX = 64

/**
 * A port free on `host` now, not in `taken`; added to it. Picked at random below the kernel's
 * ephemeral range (net.ipv4.ip_local_port_range): a port the kernel assigns (listen on 0) is
 * handed out again soon after it is released, to another process picking a port the same way
 * or to the local end of an outgoing connection, so a port picked that way and listened on
 * later (or again after a restart) is often taken by then.
 */
export async function freePort(host: string, taken: Set<number> = new Set()): Promise<number> {
  const below = await ephemeralRangeStart()
  for (let attempt = 0; attempt < PICK_ATTEMPTS_MAX && below - PICKED_PORT_MIN >= 1024; attempt++) {
    const port = PICKED_PORT_MIN + Math.floor(Math.random() * (below - PICKED_PORT_MIN))
    if (taken.has(port) || !(await isPortFree(host, port))) continue
    taken.add(port)
    return port
  }
  for (;;) {
    const port = await ephemeralPort(host)
    if (!taken.has(port)) {
      taken.add(port)
      return port
    }
  }
}

/** First port of the kernel's ephemeral range; Linux's default when it cannot be read. */
async function ephemeralRangeStart(): Promise<number> {
  try {
    const first = Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0])
    return Number.isInteger(first) && first > 0 ? first : 32768
  } catch {
    return 32768
  }
}

/** True when `port` can be listened on at `host` right now. */
export async function isPortFree(host: string, port: number): Promise<boolean> {
  const server = createServer()
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, host, () => resolve(true))
  })
  if (ok) await new Promise((resolve) => server.close(resolve))
  return ok
}

async function ephemeralPort(host: string): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => resolve())
  })
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}
