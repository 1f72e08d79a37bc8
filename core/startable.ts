/** A long-lived component: `main` wires and starts it, and stops it on SIGTERM. */
export interface Startable {
  start(): Promise<void>
  /** Idempotent; resolves once every resource the component holds is released. */
  stop(): Promise<void>
}
