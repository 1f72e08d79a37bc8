/**
 * Validation of rendered manifests, three ways:
 * - built-in kinds (and ServiceMonitor) against the Kubernetes OpenAPI schemas
 *   that kubernetes-models compiles into validators: types, required fields, formats;
 * - the same kinds through the TypeScript compiler against kubernetes-models'
 *   declarations, whose excess-property check finds the unknown or misspelt
 *   fields the OpenAPI schemas let through (they allow additional properties,
 *   while kube-apiserver's strict field validation refuses them);
 * - custom resources against crds/ with the test API server's validator
 *   (unknown fields, schema, CEL rules), as kube-apiserver would on create.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'
import yaml from 'js-yaml'
import type { FieldError } from '../test-apiserver/errors.js'
import type { Json } from '../test-apiserver/patch.js'
import { prune, validateRules, validateSchema, type JSONSchemaProps } from '../test-apiserver/schema.js'
import { ROOT, describe, type Manifest } from './helm.js'

/** Where a kind's model lives, if kubernetes-models or an extension package has one. */
export function modelModule(apiVersion: string, kind: string): string | undefined {
  if (apiVersion === 'monitoring.coreos.com/v1') return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`
  if (apiVersion === 'cairn.dev/v1alpha1' || apiVersion.startsWith('snapshot.storage.k8s.io/')) return undefined
  return `kubernetes-models/${apiVersion}/${kind}`
}

interface ModelClass {
  new (data: unknown): { validate(): void }
}

/** Validates one object against its kind's OpenAPI schema; returns the problems found. */
export async function validateWithModel(m: Manifest): Promise<string[]> {
  const specifier = modelModule(m.apiVersion, m.kind)
  if (specifier === undefined) return [`${describe(m)}: no kubernetes-models validator for ${m.apiVersion}`]
  let Model: ModelClass | undefined
  try {
    Model = ((await import(specifier)) as Record<string, ModelClass | undefined>)[m.kind]
  } catch {
    Model = undefined
  }
  if (Model === undefined) return [`${describe(m)}: no model ${specifier}`]
  try {
    new Model(structuredClone(m)).validate()
    return []
  } catch (err) {
    return [`${describe(m)}: ${(err as Error).message}`]
  }
}

/** The source text assigning each manifest to its declared type, and where each starts. */
function typedSource(manifests: readonly Manifest[]): { text: string; starts: Array<{ line: number; label: string }> } {
  const lines: string[] = []
  const starts: Array<{ line: number; label: string }> = []
  manifests.forEach((m, i) => {
    const specifier = modelModule(m.apiVersion, m.kind)
    if (specifier === undefined) return
    lines.push(`import type { I${m.kind} as T${i} } from '${specifier}'`)
  })
  manifests.forEach((m, i) => {
    if (modelModule(m.apiVersion, m.kind) === undefined) return
    starts.push({ line: lines.length, label: describe(m) })
    lines.push(...`export const m${i}: T${i} = ${JSON.stringify(m, null, 1)}`.split('\n'))
  })
  return { text: lines.join('\n') + '\n', starts }
}

/**
 * Type-checks the manifests against the kubernetes-models declarations and
 * returns one message per error, naming the object. Catches unknown fields.
 */
export function unknownFieldErrors(manifests: readonly Manifest[]): string[] {
  const fileName = join(ROOT, 'e2e', 'helm', '__rendered_manifests__.ts')
  const { text, starts } = typedSource(manifests)
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const original = { getSourceFile: host.getSourceFile, fileExists: host.fileExists, readFile: host.readFile }
  host.fileExists = (f) => f === fileName || original.fileExists.call(host, f)
  host.readFile = (f) => (f === fileName ? text : original.readFile.call(host, f))
  host.getSourceFile = (f, version, onError, create) =>
    f === fileName ? ts.createSourceFile(f, text, version) : original.getSourceFile.call(host, f, version, onError, create)
  const program = ts.createProgram([fileName], options, host)
  const source = program.getSourceFile(fileName)
  const diagnostics = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]
  return diagnostics.map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1
    const owner = [...starts].reverse().find((s) => s.line <= line)
    return `${owner?.label ?? '(imports)'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`
  })
}

/** CRD openAPIV3Schema by `group/version/Kind`, read from a directory of CRD YAML files. */
export function loadCrdSchemas(dir: string): Map<string, JSONSchemaProps> {
  const schemas = new Map<string, JSONSchemaProps>()
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    const crd = yaml.load(readFileSync(join(dir, file), 'utf8')) as {
      spec: { group: string; names: { kind: string }; versions: Array<{ name: string; schema: { openAPIV3Schema: JSONSchemaProps } }> }
    }
    for (const version of crd.spec.versions) {
      schemas.set(`${crd.spec.group}/${version.name}/${crd.spec.names.kind}`, version.schema.openAPIV3Schema)
    }
  }
  return schemas
}

/**
 * snapshot.storage.k8s.io/v1 VolumeSnapshotClass, written from the API's
 * documented fields (the CRD ships with external-snapshotter, not with Kubernetes).
 */
export const VOLUME_SNAPSHOT_CLASS_SCHEMA: JSONSchemaProps = {
  type: 'object',
  required: ['driver', 'deletionPolicy'],
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata: { type: 'object' },
    driver: { type: 'string', minLength: 1 },
    deletionPolicy: { type: 'string', enum: ['Delete', 'Retain'] },
    parameters: { type: 'object', additionalProperties: { type: 'string' } },
  },
}

/** Validates a custom resource as kube-apiserver would on create: unknown fields, schema, CEL rules. */
export function validateCustomResource(m: Manifest, schemas: ReadonlyMap<string, JSONSchemaProps>): string[] {
  const key = `${m.apiVersion}/${m.kind}`
  const schema = schemas.get(key)
  if (schema === undefined) return [`${describe(m)}: no CRD schema for ${key}`]
  const value = structuredClone(m) as unknown as Json
  const problems = prune(schema, value).map((path) => `${describe(m)}: unknown field ${path}`)
  const errors: FieldError[] = []
  validateSchema(schema, value, '', errors)
  if (errors.length === 0) validateRules(schema, value, undefined, '', errors)
  return [...problems, ...errors.map((e) => `${describe(m)}: ${e.field}: ${e.text}`)]
}

/** Every problem with every manifest; empty means all of them validate. */
export async function validateAll(manifests: readonly Manifest[]): Promise<string[]> {
  const crdSchemas = loadCrdSchemas(join(ROOT, 'crds'))
  crdSchemas.set('snapshot.storage.k8s.io/v1/VolumeSnapshotClass', VOLUME_SNAPSHOT_CLASS_SCHEMA)
  const problems: string[] = []
  for (const m of manifests) {
    if (modelModule(m.apiVersion, m.kind) === undefined) problems.push(...validateCustomResource(m, crdSchemas))
    else problems.push(...(await validateWithModel(m)))
  }
  problems.push(...unknownFieldErrors(manifests))
  return problems
}
