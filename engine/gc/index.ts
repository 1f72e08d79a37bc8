/** Garbage collection: mark from heads, snapshots and pins; sweep on the storage nodes. */
export { GarbageCollector, GcBusyError, GcFilterTooLargeError, GcSweepError, type GarbageCollectorInit, type GarbageCollectorComponents, type GcReport, type GcRunOptions, type SweepNode } from './collector.js'
export { Marker, GcRootUnreadableError, type MarkOptions, type MarkResult, type PageReaderFor } from './mark.js'
export { collectRoots, type ManifestRoot, type Roots } from './roots.js'
