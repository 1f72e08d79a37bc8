/**
 * Kubernetes Events (core/v1) about Cairn objects. Cluster-scoped objects have
 * no namespace of their own; their Events go to the operator's namespace
 * (`kubectl get events -n cairn-system --field-selector involvedObject.name=…`).
 * `reportingInstance` names the operator process, so an Event says which
 * replica wrote it.
 */
import type { CoreV1Event } from '@kubernetes/client-node'
import { API_VERSION, FIELD_MANAGER } from './constants.js'
import type { KubeClient } from './kube.js'
import type { KubeObject } from './types.js'

export type EventType = 'Normal' | 'Warning'

export class EventRecorder {
  constructor(
    private readonly kube: KubeClient,
    private readonly namespace: string,
    private readonly identity: string,
  ) {}

  /** Records one Event about `obj`. */
  async record(obj: KubeObject & { kind?: string }, kind: string, type: EventType, reason: string, message: string): Promise<void> {
    const now = new Date()
    const body: CoreV1Event = {
      metadata: { generateName: `${obj.metadata.name}.`, namespace: this.namespace },
      involvedObject: { apiVersion: API_VERSION, kind, name: obj.metadata.name, uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: FIELD_MANAGER },
      reportingComponent: FIELD_MANAGER,
      reportingInstance: this.identity,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    }
    await this.kube.write('Event', `record event ${reason} on ${kind} ${obj.metadata.name}`, () =>
      this.kube.core.createNamespacedEvent({ namespace: this.namespace, body }),
    )
  }
}
