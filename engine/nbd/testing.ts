/**
 * Test support for the NBD server: start a server on an ephemeral loopback port,
 * run real client tools without blocking the event loop the server runs on, and a
 * minimal raw-socket client for inputs no real client would send.
 * Test infrastructure only; nothing in the server imports it.
 */
import { execFile } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { Registry } from 'prom-client'
import { silentLogger } from '../../core/logger.js'
import { staticExports, type NbdBackend } from './backend.js'
import { ByteReader } from './byte-reader.js'
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPTS_MAGIC,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REQUEST_MAGIC,
  NBD_REP_ACK,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  NBD_REPLY_FLAG_DONE,
} from './protocol.js'
import { NbdServer, type NbdServerInit } from './server.js'

export interface TestServer {
  server: NbdServer
  registry: Registry
  port: number
  uri(name: string): string
  stop(): Promise<void>
}

export async function startTestServer(
  exports: Record<string, NbdBackend>,
  init: Partial<NbdServerInit> = {},
): Promise<TestServer> {
  const registry = new Registry()
  const server = new NbdServer(
    { listen: [{ host: '127.0.0.1', port: 0 }], ...init },
    { logger: silentLogger(), registry, exports: staticExports(new Map(Object.entries(exports))) },
  )
  await server.start()
  const first = server.addresses()[0]
  const port = first !== undefined && 'port' in first ? first.port : 0
  return { server, registry, port, uri: (name) => `nbd://127.0.0.1:${port}/${name}`, stop: () => server.stop() }
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a client tool asynchronously (the server under test shares this event loop). */
export function run(
  file: string,
  args: readonly string[],
  timeoutMs = 60_000,
  env?: Readonly<Record<string, string | undefined>>,
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

/** Fails with the tool's output when it did not exit 0. */
export async function runOk(
  file: string,
  args: readonly string[],
  timeoutMs?: number,
  env?: Readonly<Record<string, string | undefined>>,
): Promise<string> {
  const result = await run(file, args, timeoutMs, env)
  if (result.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`)
  return result.stdout
}

/** A raw NBD client over node:net: the test decides every byte. */
export class RawClient {
  readonly reader: ByteReader
  private constructor(readonly socket: Socket) {
    this.reader = new ByteReader(socket, 1 << 20)
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1')
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    socket.setNoDelay(true)
    return new RawClient(socket)
  }

  write(data: Uint8Array): void {
    this.socket.write(data)
  }

  /** Reads the 18-byte greeting and answers with fixed newstyle + no zeroes. */
  async greet(clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<Buffer> {
    const greeting = await this.reader.read(18)
    const flags = Buffer.alloc(4)
    flags.writeUInt32BE(clientFlags >>> 0)
    this.write(flags)
    return greeting
  }

  sendOption(option: number, data: Uint8Array = Buffer.alloc(0), declaredLength = data.length): void {
    const header = Buffer.alloc(16)
    header.writeBigUInt64BE(NBD_OPTS_MAGIC, 0)
    header.writeUInt32BE(option, 8)
    header.writeUInt32BE(declaredLength >>> 0, 12)
    this.write(Buffer.concat([header, data]))
  }

  async readOptionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const header = await this.reader.read(20)
    const length = header.readUInt32BE(16)
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: await this.reader.read(length) }
  }

  /** Reads option replies up to and including the first non-INFO/SERVER/META reply. */
  async readOptionReplies(): Promise<Array<{ option: number; type: number; data: Buffer }>> {
    const replies = []
    for (;;) {
      const reply = await this.readOptionReply()
      replies.push(reply)
      if (reply.type === NBD_REP_ACK || reply.type >= 0x80000000) return replies
    }
  }

  /** Greets, optionally negotiates structured replies and base:allocation, and GOes to `name`. */
  async open(name: string, opts: { structured?: boolean; blockStatus?: boolean } = {}): Promise<void> {
    await this.greet()
    if (opts.structured) {
      this.sendOption(NBD_OPT_STRUCTURED_REPLY)
      await this.readOptionReplies()
    }
    if (opts.blockStatus) {
      const q = Buffer.from('base:allocation')
      this.sendOption(NBD_OPT_SET_META_CONTEXT, Buffer.concat([u32(name.length), Buffer.from(name), u32(1), u32(q.length), q]))
      await this.readOptionReplies()
    }
    this.sendOption(NBD_OPT_GO, Buffer.concat([u32(name.length), Buffer.from(name), Buffer.from([0, 0])]))
    const replies = await this.readOptionReplies()
    const last = replies[replies.length - 1]
    if (last?.type !== NBD_REP_ACK) throw new Error(`NBD_OPT_GO failed with reply type 0x${last?.type.toString(16)}`)
  }

  sendRequest(type: number, handle: bigint, offsetBytes: bigint | number, lengthBytes: number, flags = 0, payload?: Uint8Array): void {
    const header = Buffer.alloc(28)
    header.writeUInt32BE(NBD_REQUEST_MAGIC, 0)
    header.writeUInt16BE(flags, 4)
    header.writeUInt16BE(type, 6)
    header.writeBigUInt64BE(handle, 8)
    header.writeBigUInt64BE(BigInt(offsetBytes), 16)
    header.writeUInt32BE(lengthBytes >>> 0, 24)
    this.write(payload === undefined ? header : Buffer.concat([header, payload]))
  }

  /** Reads a simple reply; `dataBytes` of payload when the caller knows it is a successful read. */
  async readSimpleReply(dataBytes = 0): Promise<{ errno: number; handle: bigint; data: Buffer }> {
    const header = await this.reader.read(16)
    if (header.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC) throw new Error('not a simple reply')
    const errno = header.readUInt32BE(4)
    const data = errno === 0 && dataBytes > 0 ? await this.reader.read(dataBytes) : Buffer.alloc(0)
    return { errno, handle: header.readBigUInt64BE(8), data }
  }

  /** Reads one reply of either kind; structured replies are read to their DONE chunk. */
  async readReply(): Promise<{ handle: bigint; errno: number; chunks: Array<{ type: number; payload: Buffer }> }> {
    const magic = (await this.reader.read(4)).readUInt32BE(0)
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      const rest = await this.reader.read(12)
      return { errno: rest.readUInt32BE(0), handle: rest.readBigUInt64BE(4), chunks: [] }
    }
    if (magic !== NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`)
    const chunks: Array<{ type: number; payload: Buffer }> = []
    let errno = 0
    for (let first = true; ; first = false) {
      const rest = await this.reader.read(first ? 16 : 20)
      const h = first ? rest : rest.subarray(4)
      const flags = h.readUInt16BE(0)
      const type = h.readUInt16BE(2)
      const handle = h.readBigUInt64BE(4)
      const payload = await this.reader.read(h.readUInt32BE(12))
      if (type & 0x8000) errno = payload.readUInt32BE(0)
      chunks.push({ type, payload })
      if (flags & NBD_REPLY_FLAG_DONE) return { handle, errno, chunks }
    }
  }

  /** Resolves when the server has closed the connection. */
  closed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.socket.readableEnded) resolve()
      else this.socket.once('close', () => resolve())
    })
  }

  destroy(): void {
    this.socket.destroy()
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

/** Resolves with `promise`, or rejects after `ms` so a hang fails the test instead of stalling it. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
