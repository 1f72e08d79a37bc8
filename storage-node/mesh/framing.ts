/**
 * Length-prefixed frames on a libp2p stream: a 4-byte big-endian body length,
 * then the body. The length is checked against the reader's limit before a
 * byte of the body is buffered, so a peer cannot make a node allocate more
 * than `maxMessageBytes` per stream by announcing a huge frame.
 */
import { MeshMessageTooLargeError, MeshProtocolError } from './errors.js'

export const FRAME_PREFIX_BYTES = 4

/** What libp2p streams yield: Uint8Arrays or Uint8ArrayLists (both flatten with subarray()). */
export type StreamChunk = Uint8Array | { subarray(): Uint8Array }

/** The length prefix of a frame whose body is `bodyBytes` long. */
export function framePrefix(bodyBytes: number): Uint8Array {
  const prefix = new Uint8Array(FRAME_PREFIX_BYTES)
  new DataView(prefix.buffer).setUint32(0, bodyBytes)
  return prefix
}

/** The two pieces of one frame, written without copying the body. */
export function frame(body: Uint8Array): Uint8Array[] {
  return [framePrefix(body.length), body]
}

/** Bytes a body takes on the wire as a frame. */
export function frameBytes(body: Uint8Array): number {
  return FRAME_PREFIX_BYTES + body.length
}

/** Reads whole frames from a stream's source. One reader per stream; not concurrent. */
export class FrameReader {
  private readonly iterator: AsyncIterator<StreamChunk>
  private buffered: Uint8Array[] = []
  private bufferedBytes = 0
  private ended = false

  /**
   * @param source the stream's source
   * @param maxFrameBytes largest body accepted
   * @param onBytes called with the size of each chunk received (metrics)
   */
  constructor(
    source: AsyncIterable<StreamChunk>,
    private readonly maxFrameBytes: number,
    private readonly onBytes: (bytes: number) => void = () => undefined,
  ) {
    this.iterator = source[Symbol.asyncIterator]()
  }

  /**
   * The next frame's body, or undefined when the stream ended cleanly between frames.
   * @throws MeshMessageTooLargeError when a frame announces more than the limit
   * @throws MeshProtocolError when the stream ends inside a frame or a frame is empty
   */
  async next(): Promise<Uint8Array | undefined> {
    if (!(await this.fill(FRAME_PREFIX_BYTES))) {
      if (this.bufferedBytes === 0) return undefined
      throw new MeshProtocolError(`stream ended inside a frame length prefix (${this.bufferedBytes} of ${FRAME_PREFIX_BYTES} bytes)`)
    }
    const prefix = this.take(FRAME_PREFIX_BYTES)
    const length = new DataView(prefix.buffer, prefix.byteOffset, FRAME_PREFIX_BYTES).getUint32(0)
    if (length > this.maxFrameBytes) {
      throw new MeshMessageTooLargeError(`frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`)
    }
    if (length === 0) throw new MeshProtocolError('empty frame')
    if (!(await this.fill(length))) {
      throw new MeshProtocolError(`stream ended inside a frame (${this.bufferedBytes} of ${length} bytes)`)
    }
    return this.take(length)
  }

  /** Throws unless the stream ends here, with no further frame or stray byte. */
  async expectEnd(): Promise<void> {
    if (await this.fill(1)) throw new MeshProtocolError('unexpected data after the last frame of the request')
  }

  private async fill(bytes: number): Promise<boolean> {
    while (this.bufferedBytes < bytes) {
      if (this.ended) return false
      const { done, value } = await this.iterator.next()
      if (done === true) {
        this.ended = true
        return false
      }
      const chunk = value instanceof Uint8Array ? value : value.subarray()
      if (chunk.length === 0) continue
      this.onBytes(chunk.length)
      this.buffered.push(chunk)
      this.bufferedBytes += chunk.length
    }
    return true
  }

  /** Removes and returns the first `bytes` buffered bytes (copies only when they span chunks). */
  private take(bytes: number): Uint8Array {
    const first = this.buffered[0]
    if (first !== undefined && first.length >= bytes) {
      if (first.length === bytes) this.buffered.shift()
      else this.buffered[0] = first.subarray(bytes)
      this.bufferedBytes -= bytes
      return first.subarray(0, bytes)
    }
    const out = new Uint8Array(bytes)
    let filled = 0
    while (filled < bytes) {
      const chunk = this.buffered[0]!
      const n = Math.min(chunk.length, bytes - filled)
      out.set(chunk.subarray(0, n), filled)
      filled += n
      if (n === chunk.length) this.buffered.shift()
      else this.buffered[0] = chunk.subarray(n)
    }
    this.bufferedBytes -= bytes
    return out
  }
}

/** Bytes gathered into one write: each write is a yamux frame, a Noise message and a wake-up of the peer. */
export const COALESCE_BYTES = 64 * 1024

/**
 * Joins small chunks into writes of about `targetBytes`, so a response of many
 * small frames costs a few writes, not three per frame. Chunks already that
 * large pass through without a copy.
 */
export async function* coalesce(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  onBytes: (bytes: number) => void = () => undefined,
  targetBytes = COALESCE_BYTES,
): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = []
  let pendingBytes = 0
  const flush = (): Uint8Array => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
    pending = []
    pendingBytes = 0
    onBytes(out.length)
    return out
  }
  for await (const chunk of source) {
    if (chunk.length >= targetBytes) {
      if (pendingBytes > 0) yield flush()
      onBytes(chunk.length)
      yield chunk
      continue
    }
    pending.push(chunk)
    pendingBytes += chunk.length
    if (pendingBytes >= targetBytes) yield flush()
  }
  if (pendingBytes > 0) yield flush()
}
