/**
 * TEST INFRASTRUCTURE: kube-apiserver's generic registry semantics over the
 * object store: create (generateName, AlreadyExists), update with
 * resourceVersion preconditions, the status subresource, generation bumps on
 * spec changes only, CRD schema pruning/defaulting/validation, finalizers and
 * deletionTimestamp, and ownerReference garbage collection.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { ApiError, alreadyExists, badRequest, conflict, invalid, notFound, type FieldError, type ObjectRef } from './errors.js'
import { isObject, type Json, type JsonObject } from './patch.js'
import { groupVersion, storageKey, validateCrd, type ResourceRegistry, type ResourceType } from './resources.js'
import { applyDefaults, prune, validateRules, validateSchema } from './schema.js'
import { objectKey, type ObjectStore } from './store.js'

/** Options of one write, from the query string. */
export interface WriteOptions {
  /** `fieldValidation=Strict` turns pruned unknown fields into errors. */
  strict?: boolean
  /** `dryRun=All`: validate and answer, store nothing. */
  dryRun?: boolean
}

export type Propagation = 'Background' | 'Foreground' | 'Orphan'

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

export function meta(obj: JsonObject): JsonObject {
  if (!isObject(obj.metadata)) obj.metadata = {}
  return obj.metadata as JsonObject
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z')
}

function ref(rt: ResourceType, name: string): ObjectRef {
  return { resource: rt.resource, group: rt.group, kind: rt.kind, name }
}

function stringList(v: Json | undefined): string[] {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : []
}

/** Everything but metadata (and status, when it is a subresource): what `generation` tracks. */
function specPart(rt: ResourceType, obj: JsonObject): JsonObject {
  const rest: JsonObject = { ...obj }
  delete rest.metadata
  delete rest.apiVersion
  delete rest.kind
  if (rt.statusSubresource) delete rest.status
  return rest
}

export class RestStorage {
  /** Objects removed by the last operation, so garbage collection can run after it. */
  private gcPending = false

  constructor(
    readonly registry: ResourceRegistry,
    readonly store: ObjectStore,
  ) {}

  get(rt: ResourceType, namespace: string | undefined, name: string): JsonObject {
    const obj = this.store.get(storageKey(rt), objectKey(namespace, name))
    if (obj === undefined) throw notFound(ref(rt, name))
    return this.present(rt, obj)
  }

  /** Sets apiVersion/kind to what the request asked for (CRDs may serve several versions). */
  present(rt: ResourceType, obj: JsonObject): JsonObject {
    return { ...obj, apiVersion: groupVersion(rt), kind: rt.kind }
  }

  private checkNamespace(rt: ResourceType, namespace: string | undefined): void {
    if (!rt.namespaced) return
    if (this.store.get('/namespaces', objectKey(undefined, namespace ?? '')) === undefined) {
      throw notFound({ resource: 'namespaces', group: '', kind: 'Namespace', name: namespace ?? '' })
    }
  }

  private checkBody(rt: ResourceType, body: Json, namespace: string | undefined): JsonObject {
    if (!isObject(body)) throw badRequest('the body of the request was not a JSON object')
    if (body.kind !== undefined && body.kind !== rt.kind) throw badRequest(`the kind "${String(body.kind)}" does not match the resource ${rt.resource} (kind ${rt.kind})`)
    if (body.apiVersion !== undefined && body.apiVersion !== groupVersion(rt)) {
      throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${groupVersion(rt)})`)
    }
    const m = meta(body)
    if (rt.namespaced) {
      if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
      }
      m.namespace = namespace ?? ''
    } else {
      delete m.namespace
    }
    return body
  }

  /** Metadata rules every object obeys: a DNS-subdomain name and valid labels. */
  private validateMeta(rt: ResourceType, obj: JsonObject): FieldError[] {
    const m = meta(obj)
    const errors: FieldError[] = []
    const name = String(m.name ?? '')
    if (name === '') errors.push({ type: 'FieldValueRequired', field: 'metadata.name', text: 'Required value: name or generateName is required' })
    else if (name.length > 253 || !dns1123Subdomain.test(name)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: 'metadata.name',
        text: `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
      })
    }
    for (const [key, value] of Object.entries(isObject(m.labels) ? m.labels : {})) {
      if (typeof value !== 'string' || value.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(value)) {
        errors.push({ type: 'FieldValueInvalid', field: `metadata.labels`, text: `Invalid value: ${JSON.stringify(value)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.' (key ${key})` })
      }
    }
    return errors
  }

  /** Prunes, defaults and validates a custom resource; throws 422 Invalid. */
  private admit(rt: ResourceType, obj: JsonObject, old: JsonObject | undefined, opts: WriteOptions): void {
    const errors = this.validateMeta(rt, obj)
    if (rt.schema !== undefined) {
      const unknown = prune(rt.schema, obj)
      if (opts.strict && unknown.length > 0) {
        throw badRequest(`${rt.kind} in version "${rt.version}" cannot be handled as a ${rt.kind}: strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(', ')}`)
      }
      applyDefaults(rt.schema, obj)
      const schemaErrors: FieldError[] = []
      validateSchema(rt.schema, obj, '', schemaErrors)
      // CEL rules run only on schema-valid objects, so they never see a wrong type.
      if (schemaErrors.length === 0) validateRules(rt.schema, obj, old, '', schemaErrors)
      errors.push(...schemaErrors)
    }
    if (rt.resource === 'customresourcedefinitions' && rt.group === 'apiextensions.k8s.io') validateCrd(obj)
    if (errors.length > 0) throw invalid({ group: rt.group, kind: rt.kind, name: String(meta(obj).name ?? '') }, errors)
  }

  create(rt: ResourceType, namespace: string | undefined, body: Json, opts: WriteOptions = {}): JsonObject {
    const obj = this.checkBody(rt, structuredClone(body), namespace)
    this.checkNamespace(rt, namespace)
    const m = meta(obj)
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string' && m.generateName !== '') {
      m.name = m.generateName + randomSuffix()
    }
    if (m.resourceVersion !== undefined && m.resourceVersion !== '') {
      throw badRequest('resourceVersion should not be set on objects to be created')
    }
    for (const key of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'managedFields', 'selfLink']) delete m[key]
    if (rt.statusSubresource && !rt.keepStatusOnCreate) delete obj.status
    obj.apiVersion = groupVersion(rt)
    obj.kind = rt.kind
    this.admit(rt, obj, undefined, opts)
    const key = objectKey(namespace, String(m.name))
    if (this.store.get(storageKey(rt), key) !== undefined) throw alreadyExists(ref(rt, String(m.name)))
    Object.assign(m, { uid: randomUUID(), creationTimestamp: now(), generation: 1 })
    this.onCreate(rt, obj)
    if (opts.dryRun) return this.present(rt, { ...obj, metadata: { ...m, resourceVersion: String(this.store.currentRevision()) } })
    if (rt.crd === undefined && rt.resource === 'customresourcedefinitions') this.registry.installCrd(obj)
    return this.present(rt, this.store.put(storageKey(rt), key, obj))
  }

  /** Server-side additions at create: CRD conditions, Namespace phase. */
  private onCreate(rt: ResourceType, obj: JsonObject): void {
    if (rt.resource === 'customresourcedefinitions' && rt.group === 'apiextensions.k8s.io') obj.status = crdStatus(obj)
    if (rt.resource === 'namespaces' && rt.group === '') obj.status = { phase: 'Active' }
  }

  /**
   * PUT semantics, shared by update and patch. `subresource` is 'status' for
   * /status writes, which change only status; main writes keep the stored status.
   */
  update(rt: ResourceType, namespace: string | undefined, name: string, body: Json, subresource: string | undefined, opts: WriteOptions = {}): JsonObject {
    const incoming = this.checkBody(rt, structuredClone(body), namespace)
    const m = meta(incoming)
    if (m.name !== undefined && m.name !== name) throw badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`)
    const key = objectKey(namespace, name)
    const old = this.store.get(storageKey(rt), key)
    if (old === undefined) throw notFound(ref(rt, name))
    const oldMeta = meta(old)
    const rv = m.resourceVersion
    if (rv === undefined || rv === '') {
      if (!rt.unconditionalUpdate) {
        throw invalid({ group: rt.group, kind: rt.kind, name }, [{ type: 'FieldValueInvalid', field: 'metadata.resourceVersion', text: 'Invalid value: 0: must be specified for an update' }])
      }
    } else if (rv !== oldMeta.resourceVersion) {
      throw conflict(ref(rt, name), 'the object has been modified; please apply your changes to the latest version and try again')
    }
    const next: JsonObject = subresource === 'status' ? { ...old, metadata: structuredClone(oldMeta), status: incoming.status ?? null } : incoming
    if (next.status === null) delete next.status
    if (subresource !== 'status' && rt.statusSubresource) {
      if (old.status === undefined) delete next.status
      else next.status = old.status
    }
    this.carryMetadata(meta(next), oldMeta, subresource === 'status')
    next.apiVersion = groupVersion(rt)
    next.kind = rt.kind
    this.admit(rt, next, old, opts)
    this.checkFinalizers(rt, name, meta(next), oldMeta)
    return this.commit(rt, key, old, next, opts)
  }

  /** Fields clients cannot change through a write. */
  private carryMetadata(m: JsonObject, oldMeta: JsonObject, statusWrite: boolean): void {
    // A /status write already carries the stored metadata unchanged.
    if (statusWrite) return
    for (const k of ['uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'name', 'namespace']) {
      if (oldMeta[k] === undefined) delete m[k]
      else m[k] = oldMeta[k] as Json
    }
    delete m.managedFields
    m.resourceVersion = oldMeta.resourceVersion as Json
  }

  private checkFinalizers(rt: ResourceType, name: string, m: JsonObject, oldMeta: JsonObject): void {
    if (oldMeta.deletionTimestamp === undefined) return
    const before = stringList(oldMeta.finalizers)
    const added = stringList(m.finalizers).filter((f) => !before.includes(f))
    if (added.length > 0) {
      throw invalid({ group: rt.group, kind: rt.kind, name }, [{ type: 'FieldValueForbidden', field: 'metadata.finalizers', text: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` }])
    }
  }

  /** Stores `next` unless nothing changed; bumps generation on spec changes; ends deletions. */
  private commit(rt: ResourceType, key: string, old: JsonObject, next: JsonObject, opts: WriteOptions): JsonObject {
    if (isDeepStrictEqual(next, old)) return this.present(rt, old)
    const m = meta(next)
    if (!isDeepStrictEqual(specPart(rt, next), specPart(rt, old))) m.generation = Number(meta(old).generation ?? 1) + 1
    if (opts.dryRun) return this.present(rt, next)
    if (m.deletionTimestamp !== undefined && stringList(m.finalizers).length === 0) {
      const gone = this.removeObject(rt, key)
      return this.present(rt, gone ?? next)
    }
    if (rt.resource === 'customresourcedefinitions' && rt.group === 'apiextensions.k8s.io') this.registry.installCrd(next)
    return this.present(rt, this.store.put(storageKey(rt), key, next))
  }

  private removeObject(rt: ResourceType, key: string): JsonObject | undefined {
    const gone = this.store.remove(storageKey(rt), key)
    if (gone === undefined) return undefined
    if (rt.resource === 'customresourcedefinitions' && rt.group === 'apiextensions.k8s.io') this.dropCrd(gone)
    if (rt.resource === 'namespaces' && rt.group === '') this.dropNamespace(String(meta(gone).name))
    this.scheduleGc()
    return gone
  }

  private dropCrd(crd: JsonObject): void {
    const spec = crd.spec as JsonObject
    const plural = String((spec.names as JsonObject).plural)
    this.store.removeAll(`${String(spec.group)}/${plural}`)
    this.registry.removeCrd(String(meta(crd).name))
  }

  /** Namespace deletion takes its contents with it (the namespace controller's job). */
  private dropNamespace(namespace: string): void {
    for (const entry of [...this.store.entries()]) {
      if (meta(entry.object).namespace === namespace) this.store.remove(entry.storageKey, entry.key)
    }
  }

  /**
   * DELETE: objects with finalizers get deletionTimestamp and stay until the
   * finalizers are gone; `Orphan` strips the owner from dependents, `Foreground`
   * removes dependents first, `Background` lets the garbage collector follow.
   */
  delete(rt: ResourceType, namespace: string | undefined, name: string, options: { propagation?: Propagation; preconditionRv?: string; preconditionUid?: string; dryRun?: boolean } = {}): { object: JsonObject; removed: boolean } {
    const key = objectKey(namespace, name)
    const old = this.store.get(storageKey(rt), key)
    if (old === undefined) throw notFound(ref(rt, name))
    const oldMeta = meta(old)
    if (options.preconditionRv !== undefined && options.preconditionRv !== oldMeta.resourceVersion) {
      throw conflict(ref(rt, name), `Precondition failed: ResourceVersion in precondition: ${options.preconditionRv}, ResourceVersion in object meta: ${String(oldMeta.resourceVersion)}`)
    }
    if (options.preconditionUid !== undefined && options.preconditionUid !== oldMeta.uid) {
      throw conflict(ref(rt, name), `Precondition failed: UID in precondition: ${options.preconditionUid}, UID in object meta: ${String(oldMeta.uid)}`)
    }
    if (options.dryRun) return { object: this.present(rt, old), removed: false }
    const finalizers = stringList(oldMeta.finalizers)
    if (options.propagation === 'Orphan') this.orphanDependents(String(oldMeta.uid))
    if (options.propagation === 'Foreground' && this.hasDependents(String(oldMeta.uid)) && !finalizers.includes('foregroundDeletion')) {
      finalizers.push('foregroundDeletion')
    }
    if (finalizers.length === 0) {
      const gone = this.removeObject(rt, key)
      return { object: this.present(rt, gone ?? old), removed: true }
    }
    if (oldMeta.deletionTimestamp !== undefined && isDeepStrictEqual(finalizers, stringList(oldMeta.finalizers))) {
      return { object: this.present(rt, old), removed: false }
    }
    const next = structuredClone(old)
    const m = meta(next)
    m.finalizers = finalizers
    if (m.deletionTimestamp === undefined) {
      m.deletionTimestamp = now()
      m.deletionGracePeriodSeconds = 0
      m.generation = Number(m.generation ?? 1) + 1
    }
    const stored = this.store.put(storageKey(rt), key, next)
    if (finalizers.includes('foregroundDeletion')) this.scheduleGc()
    return { object: this.present(rt, stored), removed: false }
  }

  private owners(obj: JsonObject): string[] {
    const refs = meta(obj).ownerReferences
    return Array.isArray(refs) ? refs.filter(isObject).map((r) => String(r.uid)) : []
  }

  private hasDependents(uid: string): boolean {
    for (const { object } of this.store.entries()) if (this.owners(object).includes(uid)) return true
    return false
  }

  private orphanDependents(uid: string): void {
    for (const { storageKey: sk, key, object } of [...this.store.entries()]) {
      if (!this.owners(object).includes(uid)) continue
      const m = meta(object)
      m.ownerReferences = (m.ownerReferences as Json[]).filter((r) => !isObject(r) || r.uid !== uid)
      if ((m.ownerReferences as Json[]).length === 0) delete m.ownerReferences
      this.store.put(sk, key, object)
    }
  }

  private scheduleGc(): void {
    if (this.gcPending) return
    this.gcPending = true
    // Background GC runs after the request that triggered it, as in a real cluster.
    setImmediate(() => {
      this.gcPending = false
      this.collectGarbage()
    })
  }

  /**
   * One garbage-collector pass: deletes objects all of whose owners are gone, and
   * finishes foreground deletions whose dependents are gone. Deleting schedules
   * another pass, so chains of owners collapse one level per pass.
   */
  collectGarbage(): void {
    const live = (uid: string): boolean => this.store.hasUid(uid)
    for (const { storageKey: sk, key, object } of [...this.store.entries()]) {
      const rt = this.typeOf(sk)
      if (rt === undefined) continue
      const m = meta(object)
      const owners = this.owners(object)
      if (owners.length > 0 && !owners.some(live) && this.store.get(sk, key) !== undefined) {
        if (m.deletionTimestamp === undefined) this.delete(rt, m.namespace as string | undefined, String(m.name), { propagation: 'Background' })
        continue
      }
      const finalizers = stringList(m.finalizers)
      if (finalizers.includes('foregroundDeletion')) {
        const dependents = [...this.store.entries()].filter((e) => this.owners(e.object).includes(String(m.uid)))
        for (const dep of dependents) {
          const depType = this.typeOf(dep.storageKey)
          const dm = meta(dep.object)
          if (depType !== undefined && dm.deletionTimestamp === undefined) this.delete(depType, dm.namespace as string | undefined, String(dm.name), { propagation: 'Foreground' })
        }
        if (dependents.length === 0) {
          m.finalizers = finalizers.filter((f) => f !== 'foregroundDeletion')
          this.commit(rt, key, this.store.get(sk, key) as JsonObject, object, {})
        } else this.scheduleGc()
      }
    }
  }

  private typeOf(sk: string): ResourceType | undefined {
    return this.registry.all().find((rt) => storageKey(rt) === sk)
  }
}

function randomSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789'
  return [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join('')
}

/** A freshly installed CRD is Established with its names accepted. */
function crdStatus(crd: JsonObject): JsonObject {
  const spec = crd.spec as JsonObject
  const time = now()
  const condition = (type: string, reason: string, message: string): JsonObject => ({ type, status: 'True', reason, message, lastTransitionTime: time })
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : []
  return {
    acceptedNames: spec.names as Json,
    conditions: [condition('NamesAccepted', 'NoConflicts', 'no conflicts found'), condition('Established', 'InitialNamesAccepted', 'the initial names have been accepted')],
    storedVersions: versions.filter((v) => v.storage === true).map((v) => v.name as Json),
  }
}

export { ApiError }
