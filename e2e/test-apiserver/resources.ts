/**
 * TEST INFRASTRUCTURE: the resource types the test API server serves (a few
 * built-ins plus every installed CRD) and the discovery documents kubectl and
 * @kubernetes/client-node read to find them.
 */
import { ApiError, invalid, type FieldError } from './errors.js'
import type { Json, JsonObject } from './patch.js'
import { isObject } from './patch.js'
import { collectRules, type JSONSchemaProps } from './schema.js'
import { compileRule } from './cel.js'

/** One additionalPrinterColumns entry. */
export interface PrinterColumn {
  name: string
  type: string
  jsonPath: string
  description?: string
  priority?: number
  format?: string
}

/** Everything the server knows about one group/version/resource. */
export interface ResourceType {
  group: string
  version: string
  /** Plural, lower case: the URL segment. */
  resource: string
  singular: string
  kind: string
  listKind: string
  namespaced: boolean
  shortNames: string[]
  categories: string[]
  /** Writes through the main endpoint keep the stored status; /status changes only status. */
  statusSubresource: boolean
  /** Nodes keep the status they are created with; CRs and most built-ins drop it. */
  keepStatusOnCreate: boolean
  /** Built-ins accept a PUT without metadata.resourceVersion; CRs do not. */
  unconditionalUpdate: boolean
  /** Fields besides metadata.name and metadata.namespace that fieldSelector accepts. */
  fieldSelectors: string[]
  /** Structural schema of a custom resource; built-ins are not schema-checked. */
  schema?: JSONSchemaProps
  printerColumns: PrinterColumn[]
  /** Name of the CRD that defines this type. */
  crd?: string
}

/** `group/resource`: where objects of every version of a resource live. */
export function storageKey(rt: Pick<ResourceType, 'group' | 'resource'>): string {
  return `${rt.group}/${rt.resource}`
}

export function groupVersion(rt: Pick<ResourceType, 'group' | 'version'>): string {
  return rt.group === '' ? rt.version : `${rt.group}/${rt.version}`
}

interface BuiltinSpec {
  gv: string
  resource: string
  kind: string
  namespaced: boolean
  shortNames?: string[]
  status?: boolean
  fields?: string[]
}

const builtinSpecs: BuiltinSpec[] = [
  { gv: 'v1', resource: 'namespaces', kind: 'Namespace', namespaced: false, shortNames: ['ns'], status: true, fields: ['status.phase'] },
  { gv: 'v1', resource: 'nodes', kind: 'Node', namespaced: false, shortNames: ['no'], status: true, fields: ['spec.unschedulable'] },
  { gv: 'v1', resource: 'secrets', kind: 'Secret', namespaced: true, fields: ['type'] },
  { gv: 'v1', resource: 'configmaps', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] },
  { gv: 'v1', resource: 'services', kind: 'Service', namespaced: true, shortNames: ['svc'], status: true },
  { gv: 'v1', resource: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'] },
  { gv: 'v1', resource: 'pods', kind: 'Pod', namespaced: true, shortNames: ['po'], status: true, fields: ['spec.nodeName', 'status.phase'] },
  {
    gv: 'v1',
    resource: 'events',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
    fields: ['involvedObject.kind', 'involvedObject.name', 'involvedObject.namespace', 'involvedObject.uid', 'reason', 'type'],
  },
  { gv: 'v1', resource: 'persistentvolumes', kind: 'PersistentVolume', namespaced: false, shortNames: ['pv'], status: true },
  { gv: 'v1', resource: 'persistentvolumeclaims', kind: 'PersistentVolumeClaim', namespaced: true, shortNames: ['pvc'], status: true },
  { gv: 'apps/v1', resource: 'daemonsets', kind: 'DaemonSet', namespaced: true, shortNames: ['ds'], status: true },
  { gv: 'apps/v1', resource: 'deployments', kind: 'Deployment', namespaced: true, shortNames: ['deploy'], status: true },
  { gv: 'coordination.k8s.io/v1', resource: 'leases', kind: 'Lease', namespaced: true },
  { gv: 'events.k8s.io/v1', resource: 'events', kind: 'Event', namespaced: true, shortNames: ['ev'], fields: ['reason', 'type'] },
  { gv: 'storage.k8s.io/v1', resource: 'storageclasses', kind: 'StorageClass', namespaced: false, shortNames: ['sc'] },
  { gv: 'storage.k8s.io/v1', resource: 'csidrivers', kind: 'CSIDriver', namespaced: false },
  { gv: 'storage.k8s.io/v1', resource: 'csinodes', kind: 'CSINode', namespaced: false },
  { gv: 'storage.k8s.io/v1', resource: 'volumeattachments', kind: 'VolumeAttachment', namespaced: false, status: true },
  {
    gv: 'apiextensions.k8s.io/v1',
    resource: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
    shortNames: ['crd', 'crds'],
    status: true,
  },
]

const ageColumn: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }

function builtin(spec: BuiltinSpec): ResourceType {
  const [group, version] = spec.gv.includes('/') ? (spec.gv.split('/') as [string, string]) : ['', spec.gv]
  return {
    group,
    version,
    resource: spec.resource,
    singular: spec.kind.toLowerCase(),
    kind: spec.kind,
    listKind: `${spec.kind}List`,
    namespaced: spec.namespaced,
    shortNames: spec.shortNames ?? [],
    categories: [],
    statusSubresource: spec.status ?? false,
    keepStatusOnCreate: spec.resource === 'nodes',
    unconditionalUpdate: true,
    fieldSelectors: spec.fields ?? [],
    printerColumns: [ageColumn],
  }
}

const verbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']

/** The set of served resource types; CRDs add and remove theirs at run time. */
export class ResourceRegistry {
  private readonly types = new Map<string, ResourceType>()

  constructor() {
    for (const spec of builtinSpecs) this.add(builtin(spec))
  }

  private add(rt: ResourceType): void {
    this.types.set(`${groupVersion(rt)}/${rt.resource}`, rt)
  }

  /** The type served at /apis/<group>/<version>/<resource>, if any. */
  lookup(group: string, version: string, resource: string): ResourceType | undefined {
    return this.types.get(`${group === '' ? version : `${group}/${version}`}/${resource}`)
  }

  all(): ResourceType[] {
    return [...this.types.values()]
  }

  /** Registers (or re-registers) the versions a validated CRD serves. */
  installCrd(crd: JsonObject): void {
    this.removeCrd(String((crd.metadata as JsonObject).name))
    for (const rt of typesOfCrd(crd)) this.add(rt)
  }

  removeCrd(name: string): void {
    for (const [key, rt] of this.types) if (rt.crd === name) this.types.delete(key)
  }

  /** Group → versions, in registration order, for /apis. */
  groups(): Map<string, string[]> {
    const groups = new Map<string, string[]>()
    for (const rt of this.types.values()) {
      if (rt.group === '') continue
      const versions = groups.get(rt.group) ?? []
      if (!versions.includes(rt.version)) versions.push(rt.version)
      groups.set(rt.group, versions)
    }
    return groups
  }

  /** An APIResourceList for one group version, or undefined when nothing is served there. */
  resourceList(group: string, version: string): JsonObject | undefined {
    const list = this.all().filter((rt) => rt.group === group && rt.version === version)
    if (list.length === 0) return undefined
    const resources: Json[] = []
    for (const rt of list) {
      const entry: JsonObject = { name: rt.resource, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs }
      if (rt.shortNames.length > 0) entry.shortNames = rt.shortNames
      if (rt.categories.length > 0) entry.categories = rt.categories
      resources.push(entry)
      if (rt.statusSubresource) {
        resources.push({ name: `${rt.resource}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['get', 'patch', 'update'] })
      }
    }
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: groupVersion({ group, version }), resources }
  }

  /** APIGroupList for /apis. */
  groupList(): JsonObject {
    const groups: Json[] = []
    for (const [name, versions] of this.groups()) groups.push(apiGroup(name, versions))
    return { kind: 'APIGroupList', apiVersion: 'v1', groups }
  }

  apiGroup(name: string): JsonObject | undefined {
    const versions = this.groups().get(name)
    return versions === undefined ? undefined : { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(name, versions) }
  }
}

function apiGroup(name: string, versions: string[]): JsonObject {
  const list = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }))
  return { name, versions: list, preferredVersion: list[0] ?? null }
}

function crdError(name: string, errors: FieldError[]): ApiError {
  return invalid({ group: 'apiextensions.k8s.io', kind: 'CustomResourceDefinition', name }, errors)
}

function req(errors: FieldError[], ok: boolean, field: string, text: string): void {
  if (!ok) errors.push({ type: 'FieldValueInvalid', field, text })
}

/** Checks the parts of a CRD the server relies on; throws 422 Invalid like the real one. */
export function validateCrd(crd: JsonObject): void {
  const metadata = isObject(crd.metadata) ? crd.metadata : {}
  const name = typeof metadata.name === 'string' ? metadata.name : ''
  const spec = isObject(crd.spec) ? crd.spec : {}
  const names = isObject(spec.names) ? spec.names : {}
  const errors: FieldError[] = []
  req(errors, typeof spec.group === 'string' && spec.group.includes('.'), 'spec.group', `Invalid value: ${JSON.stringify(spec.group ?? '')}: should be a domain with at least one dot`)
  req(errors, typeof names.plural === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(names.plural), 'spec.names.plural', 'Invalid value: must be a lower-case DNS label')
  req(errors, typeof names.kind === 'string' && names.kind.length > 0, 'spec.names.kind', 'Required value')
  req(errors, name === `${String(names.plural)}.${String(spec.group)}`, 'metadata.name', `Invalid value: ${JSON.stringify(name)}: must be spec.names.plural+"."+spec.group`)
  req(errors, spec.scope === 'Cluster' || spec.scope === 'Namespaced', 'spec.scope', `Unsupported value: ${JSON.stringify(spec.scope ?? '')}: supported values: "Cluster", "Namespaced"`)
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : []
  req(errors, versions.length > 0, 'spec.versions', 'Required value: must have at least one version')
  req(errors, versions.filter((v) => v.storage === true).length === 1, 'spec.versions', 'Invalid value: must have exactly one version marked as storage version')
  versions.forEach((v, i) => {
    const schema = isObject(v.schema) ? v.schema.openAPIV3Schema : undefined
    req(errors, isObject(schema) && schema.type === 'object', `spec.versions[${i}].schema.openAPIV3Schema`, 'Required value: schemas are required and must be of type object')
    if (!isObject(schema)) return
    for (const { path, rule } of collectRules(schema as unknown as JSONSchemaProps)) {
      try {
        compileRule(rule.rule)
        if (rule.messageExpression !== undefined) compileRule(rule.messageExpression)
      } catch (err) {
        const field = `spec.versions[${i}].schema.openAPIV3Schema${path === '' ? '' : `.properties[${path}]`}.x-kubernetes-validations`
        errors.push({ type: 'FieldValueInvalid', field, text: `Invalid value: ${JSON.stringify(rule.rule)}: compilation failed: ${(err as Error).message.split('\n')[0]}` })
      }
    }
  })
  if (errors.length > 0) throw crdError(name, errors)
}

/** The resource types a (validated) CRD serves: one per served version. */
function typesOfCrd(crd: JsonObject): ResourceType[] {
  const spec = crd.spec as JsonObject
  const names = spec.names as JsonObject
  const strings = (v: Json | undefined): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : [])
  const kind = String(names.kind)
  return (spec.versions as JsonObject[])
    .filter((v) => v.served !== false)
    .map((v) => {
      const subresources = isObject(v.subresources) ? v.subresources : {}
      const columns = Array.isArray(v.additionalPrinterColumns) ? (v.additionalPrinterColumns as unknown as PrinterColumn[]) : [ageColumn]
      return {
        group: String(spec.group),
        version: String(v.name),
        resource: String(names.plural),
        singular: typeof names.singular === 'string' ? names.singular : kind.toLowerCase(),
        kind,
        listKind: typeof names.listKind === 'string' ? names.listKind : `${kind}List`,
        namespaced: spec.scope === 'Namespaced',
        shortNames: strings(names.shortNames),
        categories: strings(names.categories),
        statusSubresource: subresources.status !== undefined,
        keepStatusOnCreate: false,
        unconditionalUpdate: false,
        fieldSelectors: [],
        schema: (v.schema as JsonObject).openAPIV3Schema as unknown as JSONSchemaProps,
        printerColumns: columns,
        crd: String((crd.metadata as JsonObject).name),
      }
    })
}
