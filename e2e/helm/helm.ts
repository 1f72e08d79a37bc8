/**
 * Test support for the Helm chart: runs the real Helm binary (extracted by
 * scripts/helm from an npm package) and parses what it renders.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import yaml from 'js-yaml'
import { CairnError } from '../../core/errors.js'

/** Helm exited non-zero: a lint finding, a schema rejection, a template `fail`. */
export class HelmFailedError extends CairnError {
  override readonly name = 'HelmFailedError'
  readonly kind = 'invalid-argument'
  constructor(
    readonly args: readonly string[],
    readonly status: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`helm ${args.join(' ')} exited ${status}: ${stderr.trim() || stdout.trim()}`)
  }
}

/** A rendered document that is not a Kubernetes object (no apiVersion, kind or name). */
export class ManifestShapeError extends CairnError {
  override readonly name = 'ManifestShapeError'
  readonly kind = 'invalid-argument'
}

/** One rendered Kubernetes object, as Helm printed it. */
export interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  [field: string]: unknown
}

/** The repository root, found from this file whether it runs from source or from dist/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'helm', 'cairn', 'Chart.yaml'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new ManifestShapeError('no helm/cairn/Chart.yaml above the test file')
    dir = parent
  }
  return dir
}

export const ROOT = repoRoot()
export const CHART_DIR = join(ROOT, 'helm', 'cairn')
export const FIXTURES_DIR = join(ROOT, 'e2e', 'helm', 'fixtures')

/** The API versions a cluster with the snapshot CRDs and prometheus-operator serves beyond the built-ins. */
export const OPTIONAL_APIS = ['snapshot.storage.k8s.io/v1/VolumeSnapshotClass', 'monitoring.coreos.com/v1/ServiceMonitor']

let helmPath: string | undefined

/** Extracts Helm once per process (scripts/helm is idempotent) and returns its path. */
export function helmBinary(): string {
  if (helmPath !== undefined) return helmPath
  const result = spawnSync(process.execPath, [join(ROOT, 'scripts', 'helm')], { encoding: 'utf8' })
  if (result.status !== 0) throw new HelmFailedError(['(extract)'], result.status, result.stdout, result.stderr)
  helmPath = result.stdout.trim()
  return helmPath
}

/** Runs helm with `args`; throws HelmFailedError on a non-zero exit. */
export function helm(args: readonly string[]): { stdout: string; stderr: string } {
  const result = spawnSync(helmBinary(), args, {
    encoding: 'utf8',
    cwd: ROOT,
    maxBuffer: 64 * 1024 * 1024,
    // Helm keeps caches and config under these; keep the tests off the user's.
    env: { ...process.env, HELM_CACHE_HOME: join(ROOT, 'node_modules', '.cache', 'helm', 'cache'), HELM_CONFIG_HOME: join(ROOT, 'node_modules', '.cache', 'helm', 'config'), HELM_DATA_HOME: join(ROOT, 'node_modules', '.cache', 'helm', 'data') },
  })
  if (result.error) throw result.error
  if (result.status !== 0) throw new HelmFailedError(args, result.status, result.stdout, result.stderr)
  return { stdout: result.stdout, stderr: result.stderr }
}

/** Options of one `helm template` run. */
export interface RenderOptions {
  /** Values files, relative to e2e/helm/fixtures or absolute. @default [] */
  valuesFiles?: string[]
  /** Extra `--api-versions` the pretend cluster serves. @default [] */
  apiVersions?: string[]
  /** Render crds/ too. @default false */
  includeCrds?: boolean
  /** @default 'cairn-system' */
  namespace?: string
  /** @default 'cairn' */
  releaseName?: string
}

function templateArgs(options: RenderOptions): string[] {
  const args = ['template', options.releaseName ?? 'cairn', CHART_DIR, '--namespace', options.namespace ?? 'cairn-system']
  for (const file of options.valuesFiles ?? []) args.push('-f', file.startsWith('/') ? file : join(FIXTURES_DIR, file))
  for (const api of options.apiVersions ?? []) args.push('--api-versions', api)
  if (options.includeCrds) args.push('--include-crds')
  return args
}

/** Renders the chart and returns every object, in Helm's order. */
export function render(options: RenderOptions = {}): Manifest[] {
  return parseManifests(helm(templateArgs(options)).stdout)
}

/** Splits a multi-document YAML stream into objects, refusing anything that is not one. */
export function parseManifests(text: string): Manifest[] {
  const manifests: Manifest[] = []
  for (const doc of yaml.loadAll(text)) {
    if (doc === null || doc === undefined) continue
    const m = doc as Partial<Manifest>
    if (typeof m.apiVersion !== 'string' || typeof m.kind !== 'string' || typeof m.metadata?.name !== 'string') {
      throw new ManifestShapeError(`rendered document is not a Kubernetes object: ${JSON.stringify(doc).slice(0, 200)}`)
    }
    manifests.push(m as Manifest)
  }
  return manifests
}

/** `kind/name` for messages. */
export function describe(m: Manifest): string {
  return `${m.kind}/${m.metadata.name}`
}

/** The one object of `kind` named `name`; throws if absent. */
export function find(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name)
  if (found === undefined) throw new ManifestShapeError(`no ${kind}/${name} among ${manifests.map(describe).join(', ')}`)
  return found
}
