/** `host:port` (the cluster map's form) to and from TCP multiaddrs. */
import { isIPv4, isIPv6 } from 'node:net'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { InvalidArgumentError } from '../../core/errors.js'

interface HostPort {
  host: string
  port: number
}

/** @throws InvalidArgumentError */
export function parseHostPort(value: string): HostPort {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value)
  const port = Number(match?.[3])
  if (match === null || !Number.isInteger(port) || port > 65535) throw new InvalidArgumentError(`expected host:port, got ${JSON.stringify(value)}`)
  return { host: match[1] ?? match[2]!, port }
}

/** The TCP multiaddr of `host:port`; DNS names become `/dns/`. With `peerId`, pins the remote identity. */
export function toMultiaddr(value: string, peerId?: string): Multiaddr {
  const { host, port } = parseHostPort(value)
  const proto = isIPv4(host) ? 'ip4' : isIPv6(host) ? 'ip6' : 'dns'
  return multiaddr(`/${proto}/${host}/tcp/${port}${peerId === undefined ? '' : `/p2p/${peerId}`}`)
}

/** A listen address must be an IP literal: libp2p binds it as given. @throws InvalidArgumentError */
export function toListenMultiaddr(value: string): Multiaddr {
  const { host } = parseHostPort(value)
  if (!isIPv4(host) && !isIPv6(host)) throw new InvalidArgumentError(`the mesh listens on an IP address, got ${JSON.stringify(value)}`)
  return toMultiaddr(value)
}

/** `host:port` of a TCP multiaddr, or undefined when it is not one. */
export function toHostPort(address: Multiaddr): string | undefined {
  const parts = address.toString().split('/')
  const [, proto, host, transport, port] = parts
  if (transport !== 'tcp' || host === undefined || port === undefined) return undefined
  if (proto === 'ip4' || proto === 'dns' || proto === 'dns4') return `${host}:${port}`
  if (proto === 'ip6' || proto === 'dns6') return `[${host}]:${port}`
  return undefined
}
