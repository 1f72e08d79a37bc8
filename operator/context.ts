/** What every reconciler is built from: the API client, the caches and where to put things. */
import type { Logger } from '../core/logger.js'
import type { EventRecorder } from './events.js'
import type { Informer } from './informer.js'
import type { KubeClient } from './kube.js'
import type { NotReadyTracker } from './not-ready-tracker.js'
import type { UsageReports } from './usage-poller.js'
import type {
  BlockStoreObject,
  DaemonSetObject,
  NodeObject,
  PodObject,
  SnapshotObject,
  StoragePolicyObject,
  VolumeObject,
} from './types.js'

export interface Caches {
  nodes: Informer<NodeObject>
  pods: Informer<PodObject>
  daemonSets: Informer<DaemonSetObject>
  blockStores: Informer<BlockStoreObject>
  storagePolicies: Informer<StoragePolicyObject>
  volumes: Informer<VolumeObject>
  snapshots: Informer<SnapshotObject>
}

export interface ReconcilerContext {
  kube: KubeClient
  logger: Logger
  caches: Caches
  events: EventRecorder
  /** Namespace of the operator and of the objects it owns. */
  namespace: string
  /** Storage-node image when a BlockStore names none: the operator's own. */
  image: string
  /** What each storage node last reported of its allocation, usage, peer id, scrub and repair. */
  usage: UsageReports
  /** Since when members have been not ready (member down timeout). */
  notReady: NotReadyTracker
  /** The clock member timeouts and GC schedules are judged by (Unix ms); tests inject one. */
  now: () => number
}
