/**
 * Loads proto/cairn/v1/shard.proto and describes the JS shapes @grpc/proto-loader
 * produces for it. Options, fixed for every Cairn proto: camelCase field names
 * (keepCase false), 64-bit integers as JS numbers (every byte count and id Cairn
 * sends stays below 2^53; the edges assert it), defaults filled in, repeated fields
 * always arrays, and a `result` property naming the set member of each oneof.
 * These types never leave storage-node/shard-service.ts and shard-client.ts.
 */
import { loadSync, type Options } from '@grpc/proto-loader'
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js'
import { fileURLToPath } from 'node:url'
import type { RepairStats, ScrubStats } from './shard-store.js'

export const PROTO_LOADER_OPTIONS: Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, arrays: true }

/** Resolved from the package root, so it works from dist/ and from an installed package alike. */
export const SHARD_PROTO_PATH = fileURLToPath(new URL('../../proto/cairn/v1/shard.proto', import.meta.url))

export interface WireAddress {
  chunkCid: Buffer
  index: number
}
export interface WirePutShardsRequest {
  batchId: number
  shards: Buffer[]
}
export interface WirePutShardsResponse {
  batchId: number
  writtenCount: number
  existingCount: number
}
export interface WireGetShardRequest {
  address: WireAddress | null
  payloadRange: { offset: number; length: number } | null
}
export interface WireGetShardResponse {
  shard: Buffer
  payloadRange: Buffer
}
export interface WireShardError {
  code: number
  name: string
  message: string
}
export interface WireGetShardsResult {
  position: number
  shard?: Buffer
  error?: WireShardError | null
  result?: 'shard' | 'error'
}
export interface WireGetShardsResponse {
  results: WireGetShardsResult[]
}
export interface WireAddressesRequest {
  addresses: Array<WireAddress | null>
}
export interface WireDeleteShardsRequest extends WireAddressesRequest {
  lastPutBeforeUnixMs: number
}
export interface WireListShardsRequest {
  pageToken: string
  pageSize: number
  cidPrefix: Buffer
}
export interface WireShardInfo {
  address: WireAddress
  sizeBytes: number
  lastPutUnixMs: number
  corrupt: boolean
}
export interface WireListShardsResponse {
  shards: WireShardInfo[]
  nextPageToken: string
}
export interface WireStatsResponse {
  shardCount: number
  shardBytes: number
  segmentCount: number
  segmentBytes: number
  corruptShardCount: number
  capacityBytes?: number
  usedBytes?: number
  peerId?: string
  scrub?: ScrubStats | null
  repair?: RepairStats | null
}
export interface WireBloomFilter {
  version: number
  salt: Buffer
  hashCount: number
  bits: Buffer
}
export interface WireSweepRequest {
  marked: WireBloomFilter | null
  olderThanUnixMs: number
  dryRun: boolean
}
export interface WireSweepResponse {
  scannedShards: number
  deletedShards: number
  freedBytes: number
  youngShards: number
}
let cached: { service: ServiceDefinition; Client: ServiceClientConstructor } | undefined

/** The ShardService definition for servers and its client constructor; loaded once. */
export function loadShardService(): { service: ServiceDefinition; Client: ServiceClientConstructor } {
  if (cached === undefined) {
    const pkg = loadPackageDefinition(loadSync(SHARD_PROTO_PATH, PROTO_LOADER_OPTIONS))
    const Client = ((pkg.cairn as GrpcObject).v1 as GrpcObject).ShardService as ServiceClientConstructor
    cached = { service: Client.service, Client }
  }
  return cached
}
