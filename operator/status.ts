/**
 * Status writing shared by the reconcilers: standard conditions (a changed
 * status or reason moves lastTransitionTime; an unchanged one keeps it, so an
 * idempotent reconcile writes nothing) and read-modify-write of the status
 * subresource with conflict retries that never drop another writer's field.
 */
import { CairnError } from '../core/errors.js'
import type { CairnKind } from './constants.js'
import { httpStatus, type KubeClient } from './kube.js'
import type { Condition, KubeObject } from './types.js'

/** A status write kept conflicting with other writers after every retry. */
export class ConflictRetriesExhaustedError extends CairnError {
  override readonly name = 'ConflictRetriesExhaustedError'
  readonly kind = 'aborted'
}

/** The condition of `type`, if present. */
export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type)
}

/**
 * `conditions` with `next` set: lastTransitionTime moves only when the status
 * changes, and the list order is kept (types in first-seen order).
 */
export function setCondition(conditions: readonly Condition[] | undefined, next: Omit<Condition, 'lastTransitionTime'>, now: Date = new Date()): Condition[] {
  const list = [...(conditions ?? [])]
  const index = list.findIndex((c) => c.type === next.type)
  const old = index >= 0 ? list[index] : undefined
  const lastTransitionTime = old !== undefined && old.status === next.status && old.lastTransitionTime !== undefined ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z')
  const condition: Condition = { ...next, lastTransitionTime }
  if (index >= 0) list[index] = condition
  else list.push(condition)
  return list
}

/** Deep equality of JSON data (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b)
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) : v,
  )
}

/** Most read-modify-write rounds of one status update before giving up (the queue then retries with backoff). */
export const STATUS_CONFLICT_RETRIES = 8

/**
 * Read-modify-write of a custom resource's status. `compute` gets the object
 * as just read and returns its new status (or undefined to write nothing); the
 * write is guarded by that read's resourceVersion, and a 409 starts over from
 * a fresh read, so fields another writer set meanwhile are kept.
 * @returns the object as written (or as read, when nothing changed); undefined when it does not exist
 * @throws ConflictRetriesExhaustedError after {@link STATUS_CONFLICT_RETRIES} conflicts
 */
export async function updateStatus<T extends KubeObject>(
  kube: KubeClient,
  kind: CairnKind,
  name: string,
  compute: (fresh: T) => T['status'] | undefined,
): Promise<T | undefined> {
  for (let attempt = 0; attempt < STATUS_CONFLICT_RETRIES; attempt++) {
    const fresh = await kube.getCr<T>(kind, name)
    if (fresh === undefined) return undefined
    const status = compute(fresh)
    if (status === undefined || jsonEqual(status, fresh.status ?? {})) return fresh
    try {
      return await kube.replaceCrStatus<T>(kind, { ...fresh, status })
    } catch (err) {
      if (httpStatus(err) !== 409) throw err
    }
  }
  throw new ConflictRetriesExhaustedError(`${kind} ${name}: status update conflicted ${STATUS_CONFLICT_RETRIES} times`)
}

/** Adds (or removes) `finalizer` on a custom resource, guarded by its resourceVersion. No-op when already so. */
export async function ensureFinalizer<T extends KubeObject>(kube: KubeClient, kind: CairnKind, obj: T, finalizer: string, present: boolean): Promise<T> {
  const current = obj.metadata.finalizers ?? []
  if (current.includes(finalizer) === present) return obj
  const next = present ? [...current, finalizer] : current.filter((f) => f !== finalizer)
  return kube.setCrFinalizers<T>(kind, obj.metadata.name, next, obj.metadata.resourceVersion)
}
