/**
 * Phase 1: the fixed newstyle greeting. The server speaks first; the client answers
 * with its flags. Oldstyle is not offered (the spec retired it in nbd 3.10).
 */
import { NbdProtocolError } from './errors.js'
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
} from './protocol.js'
import type { Wire } from './replies.js'

export interface ClientFlags {
  /** The client asked for fixed newstyle; honoured either way, as the spec permits. */
  fixedNewstyle: boolean
  /** Omit the 124 zero bytes after NBD_OPT_EXPORT_NAME. */
  noZeroes: boolean
}

const SERVER_HANDSHAKE_FLAGS = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES
const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES

/** The 18-byte greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function greeting(): Buffer {
  const out = Buffer.alloc(18)
  out.writeBigUInt64BE(NBD_INIT_MAGIC, 0)
  out.writeBigUInt64BE(NBD_OPTS_MAGIC, 8)
  out.writeUInt16BE(SERVER_HANDSHAKE_FLAGS, 16)
  return out
}

/**
 * Sends the greeting and reads the client flags.
 * @throws NbdProtocolError when the client sets a flag the server did not offer
 *   (the spec says the server MUST then drop the connection).
 */
export async function handshake(wire: Wire): Promise<ClientFlags> {
  wire.send([greeting()])
  const flags = (await wire.reader.read(4)).readUInt32BE(0)
  if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
    throw new NbdProtocolError('bad_client_flags', `client flags 0x${flags.toString(16)} include bits the server did not offer`)
  }
  return {
    fixedNewstyle: (flags & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0,
    noZeroes: (flags & NBD_FLAG_C_NO_ZEROES) !== 0,
  }
}
