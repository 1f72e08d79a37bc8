/**
 * Exact-length reads from a socket, with backpressure.
 *
 * The NBD stream is framed by lengths the client sends, so every phase reads
 * "exactly n bytes". The reader buffers at most `highWaterBytes` beyond what a
 * pending read needs; past that it pauses the socket, so a client that sends
 * faster than the server dispatches is held back by TCP rather than by memory.
 */
import type { Socket } from 'node:net'
import { assert } from '../../core/errors.js'
import { ConnectionClosedError } from './errors.js'

interface PendingRead {
  lengthBytes: number
  resolve: (data: Buffer) => void
  reject: (err: Error) => void
}

export class ByteReader {
  private chunks: Buffer[] = []
  private bufferedBytes = 0
  private pending: PendingRead | undefined
  private closedError: Error | undefined
  private paused = false

  constructor(
    private readonly socket: Socket,
    private readonly highWaterBytes: number,
  ) {
    socket.on('data', (data: Buffer) => this.onData(data))
    socket.on('end', () => this.close(new ConnectionClosedError('client closed the connection')))
    socket.on('close', () => this.close(new ConnectionClosedError('connection closed')))
    socket.on('error', (err) => this.close(new ConnectionClosedError(`socket error: ${err.message}`, { cause: err })))
  }

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.bufferedBytes
  }

  /** Resolves to exactly `lengthBytes` bytes; rejects with ConnectionClosedError if the stream ends first. */
  read(lengthBytes: number): Promise<Buffer> {
    assert(this.pending === undefined, 'one read at a time')
    if (this.bufferedBytes >= lengthBytes) return Promise.resolve(this.take(lengthBytes))
    if (this.closedError !== undefined) return Promise.reject(this.closedError)
    return new Promise<Buffer>((resolve, reject) => {
      this.pending = { lengthBytes, resolve, reject }
      this.resume()
    })
  }

  /** Consumes and drops `lengthBytes` bytes without holding more than one slice at a time. */
  async skip(lengthBytes: number): Promise<void> {
    let left = lengthBytes
    while (left > 0) {
      const n = Math.min(left, Math.max(this.highWaterBytes, 64 * 1024))
      await this.read(n)
      left -= n
    }
  }

  /** Fails the pending read (if any) and every later one; idempotent. */
  close(err: Error): void {
    if (this.closedError !== undefined) return
    this.closedError = err
    const pending = this.pending
    this.pending = undefined
    pending?.reject(err)
  }

  private onData(data: Buffer): void {
    if (this.closedError !== undefined) return
    this.chunks.push(data)
    this.bufferedBytes += data.length
    const pending = this.pending
    if (pending !== undefined && this.bufferedBytes >= pending.lengthBytes) {
      this.pending = undefined
      pending.resolve(this.take(pending.lengthBytes))
    }
    if (this.pending === undefined && this.bufferedBytes >= this.highWaterBytes && !this.paused) {
      this.paused = true
      this.socket.pause()
    }
  }

  private resume(): void {
    if (this.paused) {
      this.paused = false
      this.socket.resume()
    }
  }

  private take(lengthBytes: number): Buffer {
    const first = this.chunks[0]
    let out: Buffer
    if (first !== undefined && first.length >= lengthBytes) {
      out = first.subarray(0, lengthBytes)
      if (first.length === lengthBytes) this.chunks.shift()
      else this.chunks[0] = first.subarray(lengthBytes)
    } else {
      out = Buffer.allocUnsafe(lengthBytes)
      let filled = 0
      while (filled < lengthBytes) {
        const chunk = this.chunks[0] as Buffer
        const n = Math.min(chunk.length, lengthBytes - filled)
        chunk.copy(out, filled, 0, n)
        filled += n
        if (n === chunk.length) this.chunks.shift()
        else this.chunks[0] = chunk.subarray(n)
      }
    }
    this.bufferedBytes -= lengthBytes
    if (this.bufferedBytes < this.highWaterBytes) this.resume()
    return out
  }
}
