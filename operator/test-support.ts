/**
 * Shared by the operator's tests: a test API server with the CRDs and the
 * operator namespace, typed helpers to create nodes and Cairn objects, and a
 * bounded wait for a condition. Test code only.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CoreV1Api, AppsV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { TestApiServer } from '../e2e/test-apiserver/index.js'
import { GROUP, PLURAL, VERSION, type CairnKind } from './constants.js'
import type { KubeObject } from './types.js'

export const NAMESPACE = 'cairn-system'
const crdDir = fileURLToPath(new URL('../../crds/', import.meta.url))

export interface Cluster {
  server: TestApiServer
  kubeconfigPath: string
  kc: KubeConfig
  core: CoreV1Api
  apps: AppsV1Api
  custom: CustomObjectsApi
  close(): Promise<void>
}

export async function startCluster(): Promise<Cluster> {
  const server = new TestApiServer({ bookmarkIntervalMs: 100 })
  await server.start()
  await server.installCrds(crdDir)
  const dir = await mkdtemp(join(tmpdir(), 'cairn-operator-'))
  const kubeconfigPath = join(dir, 'kubeconfig')
  await server.writeKubeconfig(kubeconfigPath)
  const kc = new KubeConfig()
  kc.loadFromFile(kubeconfigPath)
  const core = kc.makeApiClient(CoreV1Api)
  await core.createNamespace({ body: { metadata: { name: NAMESPACE } } })
  return {
    server,
    kubeconfigPath,
    kc,
    core,
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    async close() {
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)

export interface NodeInit {
  labels?: Record<string, string>
  annotations?: Record<string, string>
  disk?: string
  memory?: string
  ready?: boolean
}

export async function createNode(c: Cluster, name: string, init: NodeInit = {}): Promise<void> {
  const status: Record<string, unknown> = {
    capacity: { 'ephemeral-storage': init.disk ?? '100Gi', memory: init.memory ?? '8Gi', cpu: '4' },
    allocatable: { memory: init.memory ?? '8Gi', cpu: '4' },
  }
  if (init.ready !== undefined) status.conditions = [{ type: 'Ready', status: init.ready ? 'True' : 'False' }]
  await c.core.createNode({
    body: { metadata: { name, labels: { 'kubernetes.io/hostname': name, ...init.labels }, annotations: init.annotations }, status } as never,
  })
}

export async function labelNode(c: Cluster, name: string, labels: Record<string, string | null>): Promise<void> {
  await c.core.patchNode({ name, body: { metadata: { labels } } }, MERGE)
}

export async function createCr(c: Cluster, kind: CairnKind, name: string, spec: Record<string, unknown>): Promise<KubeObject> {
  return (await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL[kind],
    body: { apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name }, spec },
  })) as KubeObject
}

export async function getCr<T extends KubeObject>(c: Cluster, kind: CairnKind, name: string): Promise<T | undefined> {
  try {
    return (await c.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL[kind], name })) as T
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined
    throw err
  }
}

export async function deleteCr(c: Cluster, kind: CairnKind, name: string): Promise<void> {
  await c.custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL[kind], name })
}

/** Returns 404 as undefined for any read. */
export async function optional<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined
    throw err
  }
}

/**
 * Polls `probe` until it returns a value other than undefined/false, for at
 * most `timeoutMs`; the error names what was awaited and the last value seen.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
      last = value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${String(last instanceof Error ? last.message : JSON.stringify(last))}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
