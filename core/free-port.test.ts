import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { freePort, isPortFree } from './free-port.js'

test('freePort picks distinct listenable ports below the kernel ephemeral range and records them in taken', async () => {
  const ephemeralStart = Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0])
  const taken = new Set<number>()
  const ports: number[] = []
  for (let i = 0; i < 20; i++) ports.push(await freePort('127.0.0.1', taken))
  assert.equal(new Set(ports).size, ports.length, 'no port twice')
  assert.deepEqual([...taken].sort(), [...ports].sort())
  for (const port of ports) {
    assert.ok(port >= 10_000 && port < ephemeralStart, `${port} is below the ephemeral range starting at ${ephemeralStart}`)
    assert.ok(await isPortFree('127.0.0.1', port))
  }
})

test('isPortFree is false for a port something listens on', async () => {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  try {
    assert.equal(await isPortFree('127.0.0.1', port), false)
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
  assert.equal(await isPortFree('127.0.0.1', port), true)
})
