/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
 * the holder renews `renewTime` every `retryPeriodMs`; a candidate takes the
 * lease once it has seen the same record unchanged for `leaseDurationMs`
 * (measured on its own clock, so clock skew between nodes does not matter);
 * every take-over is a compare-and-swap on resourceVersion, so two candidates
 * cannot both win.
 *
 * Leadership is lost the moment a renewal has not succeeded for
 * `renewDeadlineMs` (< leaseDurationMs): `isLeader()` turns false at once,
 * before any other candidate can take the lease, so a deposed leader stops
 * writing before a new one starts. `stop()` releases the lease (holder cleared)
 * so the next operator starts without waiting out the duration.
 */
import type { V1Lease } from '@kubernetes/client-node'
import { InvalidArgumentError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Startable } from '../core/startable.js'
import { httpStatus, type KubeClient } from './kube.js'

/** Options of a {@link LeaderElector}. */
export interface LeaderElectionInit {
  namespace: string
  /** @default 'cairn-operator' */
  leaseName?: string
  /** This candidate's identity, unique among candidates (pod name plus a random suffix). */
  identity: string
  /** How long a lease is valid after its last renewal. @default 15000 */
  leaseDurationMs?: number
  /** The leader gives up when it could not renew for this long. @default 10000 */
  renewDeadlineMs?: number
  /** Pause between attempts to acquire or renew. @default 2000 */
  retryPeriodMs?: number
}

export interface LeaderElectionCallbacks {
  onStartedLeading: () => void
  onStoppedLeading: () => void
}

export class LeaderElector implements Startable {
  readonly leaseName: string
  private readonly leaseDurationMs: number
  private readonly renewDeadlineMs: number
  private readonly retryPeriodMs: number
  private leading = false
  private lastRenewMs = 0
  private observed: { record: string; atMs: number } | undefined
  private timer: NodeJS.Timeout | undefined
  private running = false
  private tick: Promise<void> = Promise.resolve()

  constructor(
    private readonly init: LeaderElectionInit,
    private readonly components: { kube: KubeClient; logger: Logger; callbacks: LeaderElectionCallbacks },
  ) {
    this.leaseName = init.leaseName ?? 'cairn-operator'
    this.leaseDurationMs = init.leaseDurationMs ?? 15_000
    this.renewDeadlineMs = init.renewDeadlineMs ?? 10_000
    this.retryPeriodMs = init.retryPeriodMs ?? 2_000
    if (!(this.retryPeriodMs < this.renewDeadlineMs && this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new InvalidArgumentError('leader election needs retryPeriodMs < renewDeadlineMs < leaseDurationMs')
    }
  }

  /** True while this process holds a lease it renewed within renewDeadlineMs. Checked before every write. */
  isLeader(): boolean {
    if (this.leading && Date.now() - this.lastRenewMs > this.renewDeadlineMs) this.lose('renew deadline passed')
    return this.leading
  }

  async start(): Promise<void> {
    this.running = true
    this.schedule(0)
  }

  /** Stops campaigning; a leader releases the lease so a successor need not wait for it to expire. */
  async stop(): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    await this.tick
    if (this.leading) {
      this.lose('stopping')
      await this.release().catch((err: unknown) => this.components.logger.warn({ err }, 'could not release the leader lease'))
    }
  }

  private schedule(delayMs: number): void {
    if (!this.running) return
    this.timer = setTimeout(() => {
      this.tick = this.attempt().finally(() => this.schedule(this.retryPeriodMs))
    }, delayMs)
  }

  private lose(why: string): void {
    if (!this.leading) return
    this.leading = false
    this.components.logger.warn({ identity: this.init.identity, why }, 'lost leadership')
    this.components.callbacks.onStoppedLeading()
  }

  private async attempt(): Promise<void> {
    try {
      const acquired = await this.tryAcquireOrRenew()
      if (acquired) {
        this.lastRenewMs = Date.now()
        if (!this.leading && this.running) {
          this.leading = true
          this.components.logger.info({ identity: this.init.identity, lease: this.leaseName }, 'became leader')
          this.components.callbacks.onStartedLeading()
        }
      } else {
        this.lose('lease held by another candidate')
      }
    } catch (err) {
      this.components.logger.warn({ err }, 'leader election attempt failed')
    }
    this.isLeader()
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { kube } = this.components
    const { namespace } = this.init
    const name = this.leaseName
    const now = new Date()
    const lease = await kube.readOptional(`get lease ${name}`, () => kube.coordination.readNamespacedLease({ name, namespace }))
    if (lease === undefined) {
      const body = { metadata: { name, namespace }, spec: this.spec(now, now, 0) }
      return this.casWrite(() => kube.coordination.createNamespacedLease({ namespace, body }))
    }
    const holder = lease.spec?.holderIdentity ?? ''
    const record = JSON.stringify([holder, lease.spec?.renewTime, lease.spec?.leaseTransitions, lease.metadata?.resourceVersion])
    if (this.observed?.record !== record) this.observed = { record, atMs: Date.now() }
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000
    const mine = holder === this.init.identity
    if (!mine && holder !== '' && Date.now() - this.observed.atMs < durationMs) return false
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1)
    const acquireTime = mine && lease.spec?.acquireTime ? new Date(lease.spec.acquireTime) : now
    const body: V1Lease = { ...lease, spec: this.spec(acquireTime, now, transitions) }
    return this.casWrite(() => kube.coordination.replaceNamespacedLease({ name, namespace, body }))
  }

  private spec(acquireTime: Date, renewTime: Date, leaseTransitions: number): V1Lease['spec'] {
    return {
      holderIdentity: this.init.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime,
      renewTime,
      leaseTransitions,
    }
  }

  /** A Lease write; a conflict (409) means another candidate moved first. */
  private async casWrite(call: () => Promise<unknown>): Promise<boolean> {
    try {
      await this.components.kube.write('Lease', `write lease ${this.leaseName}`, call)
      return true
    } catch (err) {
      if (httpStatus(err) === 409) return false
      throw err
    }
  }

  private async release(): Promise<void> {
    const { kube } = this.components
    const { namespace } = this.init
    const name = this.leaseName
    const lease = await kube.readOptional(`get lease ${name}`, () => kube.coordination.readNamespacedLease({ name, namespace }))
    if (lease?.spec?.holderIdentity !== this.init.identity) return
    const body: V1Lease = { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new Date() } }
    await this.casWrite(() => kube.coordination.replaceNamespacedLease({ name, namespace, body }))
  }
}
