/** The journal replica: store, gRPC service, and the per-node client the engine uses. */
export * from './errors.js'
export { JournalClient, AppendStream, JOURNAL_SERVICE_ERRORS, type JournalClientInit, type OpenedReplica, type AppendHandlers } from './journal-client.js'
export { JournalStore, type JournalStoreInit, type JournalStoreComponents } from './journal-store.js'
export { createJournalService, defaultJournalServiceLimits, type JournalServiceLimits, type JournalServiceHandle } from './journal-service.js'
export { sameRecord, type StoredRecord } from './record.js'
export type { CheckpointState } from './journal-files.js'
