/**
 * Loads proto/cairn/v1/journal.proto with the loader options every Cairn proto
 * uses (storage-node/proto.ts) and describes the JS shapes it produces. These
 * types stay inside journal-service.ts and journal-client.ts.
 */
import { loadSync } from '@grpc/proto-loader'
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js'
import { fileURLToPath } from 'node:url'
import { PROTO_LOADER_OPTIONS } from '../proto.js'

/** Resolved from the package root, so it works from dist/ and from an installed package alike. */
export const JOURNAL_PROTO_PATH = fileURLToPath(new URL('../../../proto/cairn/v1/journal.proto', import.meta.url))

export interface WireRecord {
  seq: number
  epoch: number
  op: number
  payload: Buffer
}
export interface WireCheckpoint {
  rootCid: string
  sizeBytes: number
  seq: number
}
export interface WireOpenRequest {
  volumeUid: string
  epoch: number
}
export interface WireJournalState {
  highestEpoch: number
  checkpoint: WireCheckpoint | null
  lastSeq: number
}
export interface WireOpenResponse {
  state?: WireJournalState | null
  batch?: { records: WireRecord[] } | null
  result?: 'state' | 'batch'
}
export interface WireAppendRequest {
  volumeUid: string
  epoch: number
  records: WireRecord[]
}
export interface WireAppendResponse {
  durableSeq: number
}
export interface WireCheckpointRequest {
  volumeUid: string
  epoch: number
  checkpoint: WireCheckpoint | null
}
export interface WireCheckpointResponse {
  checkpoint: WireCheckpoint | null
}
export interface WireReadRequest {
  volumeUid: string
  epoch: number
  fromSeq: number
}
export interface WireReadResponse {
  records: WireRecord[]
}
export interface WireDropRequest {
  volumeUid: string
  epoch: number
}
export interface WireCollectRequest {
  liveVolumeUids: string[]
  olderThanUnixMs: number
  dryRun: boolean
}
export interface WireCollectResponse {
  scannedJournals: number
  collectedJournals: number
  freedBytes: number
  youngJournals: number
  busyJournals: number
}

let cached: { service: ServiceDefinition; Client: ServiceClientConstructor } | undefined

/** The JournalService definition for servers and its client constructor; loaded once. */
export function loadJournalService(): { service: ServiceDefinition; Client: ServiceClientConstructor } {
  if (cached === undefined) {
    const pkg = loadPackageDefinition(loadSync(JOURNAL_PROTO_PATH, PROTO_LOADER_OPTIONS))
    const Client = ((pkg.cairn as GrpcObject).v1 as GrpcObject).JournalService as ServiceClientConstructor
    cached = { service: Client.service, Client }
  }
  return cached
}
