/**
 * TEST INFRASTRUCTURE: a minimal OpenAPI v3 discovery. kubectl (--validate=strict,
 * its default) reads /openapi/v3 to learn whether the server checks fields
 * itself (the `fieldValidation` query parameter); when it does, kubectl leaves
 * validation to the server, which is what this server does for custom resources.
 */
import type { Json, JsonObject } from './patch.js'
import type { ResourceRegistry, ResourceType } from './resources.js'
import { groupVersion } from './resources.js'

function docPath(rt: Pick<ResourceType, 'group' | 'version'>): string {
  return rt.group === '' ? `api/${rt.version}` : `apis/${rt.group}/${rt.version}`
}

/** The /openapi/v3 root: one entry per served group version. */
export function openApiV3Root(registry: ResourceRegistry): JsonObject {
  const paths: JsonObject = {}
  for (const rt of registry.all()) {
    // The hash changes with the registry so clients refetch after a CRD is added.
    paths[docPath(rt)] = { serverRelativeURL: `/openapi/v3/${docPath(rt)}?hash=${registry.all().length}` }
  }
  return { paths }
}

function gvk(rt: ResourceType): Json {
  return [{ group: rt.group, version: rt.version, kind: rt.kind }]
}

function definitionName(rt: ResourceType): string {
  const reversed = rt.group === '' ? 'io.k8s.api.core' : rt.group.split('.').reverse().join('.')
  return `${reversed}.${rt.version}.${rt.kind}`
}

/** The document of one group version: PATCH operations (with fieldValidation) and CR schemas. */
export function openApiV3Document(registry: ResourceRegistry, path: string): JsonObject | undefined {
  const types = registry.all().filter((rt) => docPath(rt) === path)
  if (types.length === 0) return undefined
  const paths: JsonObject = {}
  const schemas: JsonObject = {}
  for (const rt of types) {
    const prefix = `/${docPath(rt)}${rt.namespaced ? '/namespaces/{namespace}' : ''}/${rt.resource}/{name}`
    const operation = (verb: string): JsonObject => ({
      operationId: `${verb}${rt.kind}`,
      'x-kubernetes-group-version-kind': { group: rt.group, version: rt.version, kind: rt.kind },
      'x-kubernetes-action': verb,
      parameters: [
        { name: 'fieldValidation', in: 'query', schema: { type: 'string', uniqueItems: true } },
        { name: 'dryRun', in: 'query', schema: { type: 'string', uniqueItems: true } },
      ],
      responses: { '200': { description: 'OK', content: { 'application/json': { schema: { $ref: `#/components/schemas/${definitionName(rt)}` } } } } },
    })
    paths[prefix] = { get: operation('get'), put: operation('put'), patch: operation('patch') }
    const schema: JsonObject = rt.schema !== undefined ? (structuredClone(rt.schema) as unknown as JsonObject) : { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }
    schema['x-kubernetes-group-version-kind'] = gvk(rt)
    schemas[definitionName(rt)] = schema
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (Cairn test API server)', version: groupVersion(types[0] as ResourceType) }, paths, components: { schemas } }
}
