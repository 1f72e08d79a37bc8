/**
 * The one place that turns flags and environment into validated configuration.
 *
 * Nothing else reads `process.env`. Each daemon has a zod schema here; a value
 * comes from its flag, else from `CAIRN_<FLAG_IN_UPPER_SNAKE>`, else from the
 * schema's default. Errors name every bad field at once.
 */
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { ConfigError } from './errors.js'

const hostPort = z.string().regex(/^(?:\[[^\]]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port')
const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
/** A duration such as `500ms`, `30s`, `10m`, `24h`, `1d`; a bare number is seconds. */
const duration = z.string().regex(/^\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)?\s*$/, 'expected a duration such as 30s, 10m or 24h')

/** `cairn storage-node` */
export const storageNodeConfigSchema = z.object({
  /** Directory holding segment files and the index. */
  dataDir: z.string().min(1),
  /** gRPC listen address. */
  listen: hostPort.default('127.0.0.1:7700'),
  /** Health and metrics HTTP listen address. */
  metricsListen: hostPort.default('127.0.0.1:9700'),
  logLevel: logLevel.default('info'),
  /** The active segment file is sealed past this size (at most 2 GiB: shard locations keep offsets below 4 GiB). */
  segmentSizeBytes: z.number().int().min(1024 * 1024).max(2 ** 31).default(256 * 1024 * 1024),
  /** Sealed segments with less than this fraction of live bytes are compacted. */
  compactionLiveRatio: z.number().gt(0).max(1).default(0.5),
  /** Pause between compaction passes; 0 disables compaction. */
  compactionIntervalMs: z.number().int().min(0).default(10_000),
  /** Most shards or addresses in one request. */
  maxBatchShards: z.number().int().min(1).default(1024),
  /** Most encoded bytes in one put batch. */
  maxBatchBytes: z.number().int().min(1024).default(32 * 1024 * 1024),
  /** Largest encoded shard accepted. */
  maxShardBytes: z.number().int().min(1024).default(4 * 1024 * 1024),
  /** Requests served at once; more are refused with RESOURCE_EXHAUSTED. */
  maxInFlightRequests: z.number().int().min(1).default(256),
  /** Bytes of puts waiting for a group commit before more are refused. */
  pendingMaxBytes: z.number().int().min(1024 * 1024).default(256 * 1024 * 1024),
  /** How long shutdown waits for in-flight requests before cancelling them. */
  shutdownGraceMs: z.number().int().min(0).default(10_000),
  /** A journal segment file is closed and a new one started past this size. */
  journalSegmentSizeBytes: z.number().int().min(64 * 1024).default(64 * 1024 * 1024),
  /** Largest journal record payload accepted (a 32 MiB NBD write plus its op header). */
  journalMaxRecordBytes: z.number().int().min(4096).default(32 * 1024 * 1024 + 4096),
  /** Journal record bytes one append stream may have awaiting their fsync before the node stops reading it. */
  journalMaxInFlightBytesPerStream: z.number().int().min(1024 * 1024).default(64 * 1024 * 1024),
  /** Volume journals held open at once; idle ones are closed to make room. */
  journalMaxOpenVolumes: z.number().int().min(1).default(1024),
  /** Share of the space available to Cairn (free plus already stored) this node accepts, computed at start. */
  capacityFraction: z.number().gt(0).max(1).default(0.8),
  /** Lower clamp of the allocation, in bytes (never above what the filesystem holds). @default none */
  capacityMinBytes: z.number().int().min(0).optional(),
  /** Upper clamp of the allocation, in bytes. @default none */
  capacityMaxBytes: z.number().int().min(0).optional(),
  /** Cluster token every gRPC call must carry (prefer CAIRN_CLUSTER_TOKEN or a file: flags show in `ps`). @default none */
  clusterToken: z.string().min(1).optional(),
  /** File holding the cluster token (a mounted Secret). @default none */
  clusterTokenFile: z.string().min(1).optional(),
  /** This node's id in the cluster map; setting it turns on the durability services (mesh, scrub, repair). @default none */
  memberId: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a DNS-1123 name').optional(),
  /** The block store whose cluster map this node belongs to (durability services). @default none */
  blockStore: z.string().min(1).optional(),
  /** libp2p mesh TCP listen address (durability services). @default none */
  meshListen: hostPort.optional(),
  /** Where the cluster map is read: the Local control plane file or the BlockStore CRDs (durability services). @default none */
  controlPlane: z.enum(['local', 'kubernetes']).optional(),
  /** The Local control plane's SQLite file (`--control-plane local`). @default none */
  controlPlanePath: z.string().min(1).optional(),
  /** Kubeconfig for `--control-plane kubernetes`; unset means in-cluster config. @default none */
  kubeconfig: z.string().min(1).optional(),
  /** How often the cluster map is re-read from the control plane. */
  clusterMapRefreshInterval: duration.default('2s'),
  /** Mesh heartbeat period; a member is alive when it answered within three of them. */
  meshHeartbeatInterval: duration.default('2s'),
  /** Scrub pace: bytes of local shards re-read and verified per second. */
  scrubBytesPerSecond: z.number().int().min(1).default(16 * 1024 * 1024),
  /** Pause between the end of one scrub pass and the start of the next, e.g. `24h`. */
  scrubInterval: duration.default('24h'),
  /** Cluster-wide repair and rebalance bandwidth cap in bytes per second (each node takes its share). */
  repairBandwidthBytesPerSecond: z.number().int().min(1).default(64 * 1024 * 1024),
  /** Pause between repair passes, e.g. `1m`. */
  repairInterval: duration.default('1m'),
  /** Copies put less than this long ago are neither moved nor a reason to rebuild (writes in flight, maps still spreading; ADR 0020). */
  repairSettle: duration.default('60s'),
})
export type StorageNodeConfig = z.infer<typeof storageNodeConfigSchema>

/** `cairn engine`: serves every volume of one block store over NBD. */
export const engineConfigSchema = z.object({
  /** Directory holding `control-plane.sqlite` (the Local control plane). */
  dataDir: z.string().min(1),
  /** NBD TCP listen address. */
  listen: hostPort.default('127.0.0.1:10809'),
  /** Also serve NBD on this Unix socket. @default none */
  socket: z.string().min(1).optional(),
  /** Serve only this volume (the CSI node plugin's per-volume engine); other export names are unknown. @default every volume */
  volume: z.string().min(1).optional(),
  /** Health, metrics and admin API listen address. */
  metricsListen: hostPort.default('127.0.0.1:9809'),
  /** Identity recorded as the attachment of every volume this engine serves. */
  nodeId: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a DNS-1123 name').default('engine'),
  /** The block store whose volumes are served. */
  blockStore: z.string().min(1).default('local'),
  /** `lazy`: attach a volume on its first NBD connection; `eager`: attach every volume at start. */
  attach: z.enum(['lazy', 'eager']).default('lazy'),
  /**
   * Serve volumes read-only at their control-plane head: no epoch taken, nothing written,
   * refused while a writer holds the volume (engine/volume/read-only-volume.ts). @default false
   */
  readOnly: z.boolean().default(false),
  /**
   * Every export advertises at least this size, so a client that reads the size once
   * (nbdfuse) sees the volume grow online; I/O past the volume's real size is refused
   * (engine/nbd/growable.ts). Multiple of 4096, at most 2^52. @default the volume's size
   */
  exportSizeCeilingBytes: z.number().int().positive().max(2 ** 52).multipleOf(4096).optional(),
  /**
   * Longest time an acknowledged write waits in a volume's dirty map (and so only in the
   * journal) before a flush folds it into chunks and the head. @default 5000 (VolumeEngineOptions)
   */
  flushIntervalMs: z.number().int().min(1).max(3_600_000).optional(),
  /** `local`: the Local control plane in --data-dir; `kubernetes`: the CRDs (in a cluster: the CSI node plugin's engines). */
  controlPlane: z.enum(['local', 'kubernetes']).default('local'),
  /** Kubeconfig file for the Kubernetes control plane; unset means in-cluster config. */
  kubeconfig: z.string().min(1).optional(),
  /** Cluster token sent to storage nodes (CAIRN_CLUSTER_TOKEN); required when they listen beyond loopback. */
  clusterToken: z.string().min(1).optional(),
  /** File holding the cluster token (a mounted Secret); exclusive with --cluster-token. */
  clusterTokenFile: z.string().min(1).optional(),
  /**
   * With the Kubernetes control plane and no token given: the namespace whose
   * `cairn-storage-<block store>-token` Secret holds it (CAIRN_NAMESPACE, set from
   * the pod's namespace). @default no token
   */
  namespace: z.string().min(1).optional(),
  logLevel: logLevel.default('info'),
})
export type EngineConfig = z.infer<typeof engineConfigSchema>

/** `cairn dev`: the whole system on one machine. */
export const devConfigSchema = z.object({
  /** Everything persistent: the control plane, storage-node data, `dev.json`. */
  dataDir: z.string().min(1).default('.cairn'),
  /** k of the `local` policy (first run only; an existing policy is kept). */
  dataShards: z.number().int().min(1).max(16).default(4),
  /** m of the `local` policy (first run only). */
  parityShards: z.number().int().min(0).max(16).default(2),
  /** Chunk size of the `local` policy (first run only). */
  chunkSizeBytes: z.number().int().min(4096).max(4 * 1024 * 1024).default(65536),
  /** Size of the `demo` volume when it is created, e.g. `10GiB`. */
  size: z.string().regex(/^\d+(?:\.\d+)?\s*(?:[KMGTP]i?B?|B)?$/i, 'expected a size such as 10GiB').default('10GiB'),
  /** Name of the volume created on first run. */
  volume: z.string().min(1).default('demo'),
  /** NBD listen address. */
  listen: hostPort.default('127.0.0.1:10809'),
  /** Status page listen address. */
  statusListen: hostPort.default('127.0.0.1:10810'),
  /** Storage-node processes to run (at least k+m). @default k+m of the policy */
  storageNodes: z.number().int().min(1).max(64).optional(),
  /** A storage node dead or unhealthy this long is marked `down` in the cluster map (its shards get rebuilt elsewhere). */
  memberDownTimeout: duration.default('10m'),
  /** Scrub pace of each storage node, bytes per second. */
  scrubBytesPerSecond: z.number().int().min(1).default(16 * 1024 * 1024),
  /** Pause between scrub passes on each storage node. */
  scrubInterval: duration.default('1h'),
  /** Repair and rebalance bandwidth cap of the whole dev cluster, bytes per second. */
  repairBandwidthBytesPerSecond: z.number().int().min(1).default(64 * 1024 * 1024),
  /** Pause between repair passes on each storage node (a pass reads every local shard and asks peers about it: minutes, not seconds, on a laptop). */
  repairInterval: duration.default('2m'),
  /** Each storage node's repair settle time: copies younger than this are not moved yet (ADR 0020). */
  repairSettle: duration.default('60s'),
  /** Time between garbage collections of the dev block store. */
  gcInterval: duration.default('1h'),
  /** Shards put after a collection's mark start minus this are never swept (covers flushes in flight). */
  gcGrace: duration.default('1h'),
  logLevel: logLevel.default('info'),
})
export type DevConfig = z.infer<typeof devConfigSchema>

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12, p: 1e15, pb: 1e15,
  ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40, pi: 2 ** 50, pib: 2 ** 50,
}

/**
 * Parses a human size (`10GiB`, `512M`, `4096`): binary units with `i`, decimal without.
 * @throws ConfigError when the text is not a size or is not a whole number of bytes.
 */
export function parseSizeBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(text.trim())
  const factor = match ? SIZE_UNITS[(match[2] as string).toLowerCase()] : undefined
  if (!match || factor === undefined) throw new ConfigError(`expected a size such as 10GiB, got ${JSON.stringify(text)}`)
  const bytes = Number(match[1]) * factor
  if (!Number.isSafeInteger(bytes)) throw new ConfigError(`size ${JSON.stringify(text)} is not a whole number of bytes below 2^53`)
  return bytes
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses a duration (`500ms`, `30s`, `10m`, `24h`, `1d`) into whole milliseconds; a bare number is seconds
 * (the unit of the CRDs' `...Seconds` fields, which the operator passes through).
 * @throws ConfigError when the text is not a duration.
 */
export function parseDurationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text.trim())
  if (!match) throw new ConfigError(`expected a duration such as 30s, 10m or 24h, got ${JSON.stringify(text)}`)
  const ms = Math.round(Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? 's'] as number))
  if (!Number.isSafeInteger(ms)) throw new ConfigError(`duration ${JSON.stringify(text)} is too long`)
  return ms
}

/** The durability services of one storage node, resolved from its flags. */
export interface StorageNodeDurabilityConfig {
  memberId: string
  blockStore: string
  meshListen: string
  controlPlane: { kind: 'local'; path: string } | { kind: 'kubernetes'; kubeconfig?: string }
  clusterMapRefreshIntervalMs: number
  heartbeatIntervalMs: number
  scrubBytesPerSecond: number
  scrubIntervalMs: number
  repairBandwidthBytesPerSecond: number
  repairIntervalMs: number
  repairSettleMs: number
}

/**
 * The durability section of a storage node's config: undefined when `--member-id` is unset
 * (the node runs as a plain shard server), else every part it needs.
 * @throws ConfigError when only some of the durability flags are given.
 */
export function storageNodeDurability(config: StorageNodeConfig): StorageNodeDurabilityConfig | undefined {
  const { memberId, blockStore, meshListen, controlPlane } = config
  if (memberId === undefined && blockStore === undefined && meshListen === undefined && controlPlane === undefined) return undefined
  const missing = Object.entries({ 'member-id': memberId, 'block-store': blockStore, 'mesh-listen': meshListen, 'control-plane': controlPlane })
    .filter(([, value]) => value === undefined)
    .map(([flag]) => `--${flag}`)
  if (controlPlane === 'local' && config.controlPlanePath === undefined) missing.push('--control-plane-path')
  if (missing.length > 0 || memberId === undefined || blockStore === undefined || meshListen === undefined || controlPlane === undefined) {
    throw new ConfigError(`invalid configuration: the durability services need ${missing.join(', ')} as well`)
  }
  return {
    memberId,
    blockStore,
    meshListen,
    controlPlane:
      controlPlane === 'local'
        ? { kind: 'local', path: config.controlPlanePath as string }
        : { kind: 'kubernetes', ...(config.kubeconfig === undefined ? {} : { kubeconfig: config.kubeconfig }) },
    clusterMapRefreshIntervalMs: parseDurationMs(config.clusterMapRefreshInterval),
    heartbeatIntervalMs: parseDurationMs(config.meshHeartbeatInterval),
    scrubBytesPerSecond: config.scrubBytesPerSecond,
    scrubIntervalMs: parseDurationMs(config.scrubInterval),
    repairBandwidthBytesPerSecond: config.repairBandwidthBytesPerSecond,
    repairIntervalMs: parseDurationMs(config.repairInterval),
    repairSettleMs: parseDurationMs(config.repairSettle),
  }
}

/** `cairn operator` */
export const operatorConfigSchema = z.object({
  /** Kubeconfig file; unset means in-cluster config, else $KUBECONFIG, else ~/.kube/config. */
  kubeconfig: z.string().min(1).optional(),
  /** Namespace of the leader Lease, Events and storage-node objects. */
  namespace: z.string().min(1).max(63).default('cairn-system'),
  /** Name of the leader-election Lease. */
  leaseName: z.string().min(1).max(253).default('cairn-operator'),
  /** This replica's identity in the Lease; unset means hostname, pid and a random suffix. */
  identity: z.string().min(1).max(253).optional(),
  /** Storage-node image for BlockStores that name none (the operator's own image). */
  image: z.string().min(1).default('ghcr.io/cairn-storage/cairn:0.1.0'),
  /** Health and metrics HTTP listen address. */
  metricsListen: hostPort.default('127.0.0.1:9800'),
  logLevel: logLevel.default('info'),
  /** A lease not renewed for this long may be taken over. */
  leaseDurationMs: z.number().int().min(1000).default(15_000),
  /** The leader stops writing when it could not renew for this long (< leaseDurationMs). */
  renewDeadlineMs: z.number().int().min(100).default(10_000),
  /** Pause between lease acquire or renew attempts (< renewDeadlineMs). */
  retryPeriodMs: z.number().int().min(50).default(2_000),
  /** Every object is reconciled again at least this often. */
  resyncIntervalMs: z.number().int().min(1000).default(300_000),
  /** Server-side length of each watch before it is resumed. */
  watchTimeoutSeconds: z.number().int().min(1).default(300),
  /** Reconciles running at once per kind. */
  concurrency: z.number().int().min(1).max(64).default(2),
  /** Most keys waiting per kind. */
  maxQueuedKeys: z.number().int().min(1).default(10_000),
})
export type OperatorConfig = z.infer<typeof operatorConfigSchema>

/** `cairn csi`: the CSI driver's controller and/or node plugin. */
export const csiConfigSchema = z.object({
  /** Which CSI services to serve besides Identity. */
  mode: z.enum(['controller', 'node', 'all']),
  /** gRPC endpoint; CSI is served on a Unix socket only. */
  endpoint: z.string().regex(/^unix:.+/, 'expected unix:///path/to/csi.sock').default('unix:///csi/csi.sock'),
  /** This node's id (node and all modes). @default the hostname */
  nodeId: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a DNS-1123 name').optional(),
  /** `local`: the control plane of a `cairn dev` in --data-dir; `kubernetes`: the CRDs. @default kubernetes inside a pod, else local */
  controlPlane: z.enum(['local', 'kubernetes']).optional(),
  /** Directory of the Local control plane (`cairn dev`'s data directory). */
  dataDir: z.string().min(1).default('.cairn'),
  /** Node plugin state (staged volumes, engine sockets); must survive plugin restarts. @default <data-dir>/csi-node/<node-id> */
  stateDir: z.string().min(1).optional(),
  /** Kubeconfig file for the Kubernetes control plane; unset means in-cluster config. */
  kubeconfig: z.string().min(1).optional(),
  /**
   * The release namespace (CAIRN_NAMESPACE, from the pod): where the default block
   * store's cluster-token Secret and the node plugin pods are. With the Kubernetes
   * control plane it turns on the node admin API (node mode) and lets the controller
   * reach attached volumes' engines through it. @default none
   */
  namespace: z.string().min(1).optional(),
  /** Health and metrics HTTP listen address (the node admin API, too). */
  metricsListen: hostPort.default('127.0.0.1:9810'),
  /** Block store of volumes whose StorageClass names none. @default 'local' with the Local control plane, else 'default' */
  defaultBlockStore: z.string().min(1).optional(),
  /** Storage policy of volumes whose StorageClass names none. @default 'local' with the Local control plane, else 'default' */
  defaultStoragePolicy: z.string().min(1).optional(),
  /** Size of a volume created without a capacity range, e.g. `1GiB`. */
  defaultVolumeSize: z.string().regex(/^\d+(?:\.\d+)?\s*(?:[KMGTP]i?B?|B)?$/i, 'expected a size such as 1GiB').default('1GiB'),
  /** Volumes one node may stage at once; 0 means no limit. */
  maxVolumesPerNode: z.number().int().min(0).default(0),
  logLevel: logLevel.default('info'),
})
export type CsiConfig = z.infer<typeof csiConfigSchema>

/** Whether this process runs in a Kubernetes pod (the API server's service is in its environment). */
export function runningInKubernetes(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  return env.KUBERNETES_SERVICE_HOST !== undefined && env.KUBERNETES_SERVICE_HOST !== ''
}

/** The environment for a child process: this process's, with `extra` set on top. */
export function childEnvironment(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  return { ...process.env, ...extra }
}

type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>

/**
 * Parses `argv` against `schema`: every key of the schema is a `--kebab-case` flag,
 * with `CAIRN_UPPER_SNAKE` as its environment fallback.
 * @throws ConfigError listing every invalid or unknown field.
 */
export function loadConfig<S extends z.ZodObject<z.ZodRawShape>>(
  schema: S,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): z.infer<S> {
  const keys = Object.keys(schema.shape)
  const options: FlagSpec = {}
  for (const key of keys) options[kebab(key)] = { type: isBoolean(schema.shape[key]) ? 'boolean' : 'string' }
  let values: Record<string, unknown>
  try {
    values = parseArgs({ args: [...argv], options, allowPositionals: false, strict: true }).values
  } catch (err) {
    throw new ConfigError((err as Error).message, { cause: err })
  }
  const raw: Record<string, unknown> = {}
  for (const key of keys) {
    const fromFlag = values[kebab(key)]
    const fromEnv = env[`CAIRN_${kebab(key).replaceAll('-', '_').toUpperCase()}`]
    const value = fromFlag ?? fromEnv
    if (value !== undefined) raw[key] = coerce(schema.shape[key], value)
  }
  const result = schema.safeParse(raw)
  if (!result.success) {
    const problems = result.error.issues.map((i) => `--${kebab(String(i.path[0] ?? ''))}: ${i.message}`)
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`)
  }
  return result.data
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

function unwrap(type: unknown): unknown {
  let t = type as { unwrap?: () => unknown; def?: { innerType?: unknown } }
  while (t.def?.innerType !== undefined) t = t.def.innerType as typeof t
  return t
}

function isBoolean(type: unknown): boolean {
  return unwrap(type) instanceof z.ZodBoolean
}

/** Flags and environment are strings; numbers and booleans are converted here, then validated. */
function coerce(type: unknown, value: unknown): unknown {
  if (typeof value !== 'string') return value
  const inner = unwrap(type)
  if (inner instanceof z.ZodNumber) return value.trim() === '' ? NaN : Number(value)
  if (inner instanceof z.ZodBoolean) return value === 'true' || value === '1'
  return value
}
