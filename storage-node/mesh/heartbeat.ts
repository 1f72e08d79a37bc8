/**
 * `/cairn/heartbeat/1.0.0`: the caller sends one 8-byte frame, the peer echoes it
 * and closes. An echo proves the peer's mesh (and its event loop) is alive; the
 * liveness table remembers when each member last answered.
 */
import { randomBytes } from 'node:crypto'
import { MeshProtocolError } from './errors.js'
import { FrameReader, coalesce, frame } from './framing.js'
import type { ServedStream } from './shard-server.js'

export const HEARTBEAT_PROTOCOL = '/cairn/heartbeat/1.0.0'
const NONCE_BYTES = 8

/** Answers one heartbeat: echoes the nonce. @throws MeshProtocolError on anything but one nonce frame */
export async function serveHeartbeat(stream: ServedStream): Promise<void> {
  const reader = new FrameReader(stream.source, NONCE_BYTES)
  const nonce = await reader.next()
  if (nonce === undefined || nonce.length !== NONCE_BYTES) throw new MeshProtocolError('heartbeat without an 8-byte nonce')
  await stream.sink(coalesce(frame(nonce)))
  await stream.close()
}

/** Sends one heartbeat and waits for its echo. @throws MeshProtocolError when the echo is wrong */
export async function sendHeartbeat(stream: ServedStream): Promise<void> {
  const nonce = randomBytes(NONCE_BYTES)
  await stream.sink(coalesce(frame(nonce)))
  const echo = await new FrameReader(stream.source, NONCE_BYTES).next()
  if (echo === undefined || !Buffer.from(echo).equals(nonce)) throw new MeshProtocolError('heartbeat echo does not match')
  await stream.close()
}

interface Answer {
  /** The peer id that answered: a member whose peer id changes in the map starts from silence. */
  peerId: string
  atMs: number
}

/** When each member last answered, on a monotonic clock. */
export class LivenessTable {
  private readonly answers = new Map<string, Answer>()

  constructor(
    private readonly aliveWindowMs: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  recordAnswer(memberId: string, peerId: string): void {
    this.answers.set(memberId, { peerId, atMs: this.nowMs() })
  }

  /** Milliseconds since `memberId` (as `peerId`) last answered, or undefined. */
  silentForMs(memberId: string, peerId: string | undefined): number | undefined {
    const answer = this.answers.get(memberId)
    if (answer === undefined || (peerId !== undefined && answer.peerId !== peerId)) return undefined
    return Math.max(0, this.nowMs() - answer.atMs)
  }

  isAlive(memberId: string, peerId: string | undefined): boolean {
    const silent = this.silentForMs(memberId, peerId)
    return silent !== undefined && silent <= this.aliveWindowMs
  }

  /** Forgets members no longer in the map. */
  retain(memberIds: ReadonlySet<string>): void {
    for (const id of this.answers.keys()) if (!memberIds.has(id)) this.answers.delete(id)
  }
}
