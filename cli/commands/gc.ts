/**
 * `cairn gc`: one garbage collection of a block store, on demand, against the
 * Local control plane in --data-dir (a running `cairn dev`) or the Kubernetes
 * control plane. Prints what was marked, swept and freed.
 */
import { access } from 'node:fs/promises'
import { join, resolve as resolvePath } from 'node:path'
import { parseArgs } from 'node:util'
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node'
import type { Command } from '../main.js'
import { clusterTokenSecretName } from '../../control-plane/kubernetes/constants.js'
import { ConfigError } from '../../core/errors.js'
import type { ControlPlane } from '../../control-plane/types.js'
import { parseDurationMs } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { loadClusterToken } from '../../storage-node/auth.js'
import { CliUsageError, NoControlPlaneError, formatFromArgv, outputFormat, printTable, runCli } from './dev/client.js'

const USAGE =
  'cairn gc [--block-store local] [--grace 1h] [--dry-run] [--data-dir .cairn | --control-plane kubernetes [--kubeconfig PATH] [--namespace cairn-system | --cluster-token-file FILE]] [--output table|json]'

/** Flags shared with `cairn pin`: which control plane, which block store. */
export const CONTROL_PLANE_FLAGS = {
  'data-dir': { type: 'string', default: '.cairn' },
  'control-plane': { type: 'string', default: 'local' },
  kubeconfig: { type: 'string' },
  'block-store': { type: 'string', default: 'local' },
  output: { type: 'string', default: 'table' },
} as const

export interface OpenedControlPlane {
  cp: ControlPlane
  /** Set with the Kubernetes control plane. */
  kubeConfig?: KubeConfig
  close(): Promise<void>
}

/** Reads a block store's cluster token from its Secret (created by the operator) in `namespace`. */
export function kubernetesClusterToken(kubeConfig: KubeConfig, namespace: string): (blockStore: string) => Promise<string | undefined> {
  return async (blockStore) => {
    const name = clusterTokenSecretName(blockStore)
    let token: string | undefined
    try {
      token = (await kubeConfig.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace })).data?.token
    } catch (err) {
      throw new ConfigError(`cannot read the cluster token from Secret ${namespace}/${name}: ${(err as Error).message}`, { cause: err })
    }
    if (token === undefined) throw new ConfigError(`Secret ${namespace}/${name} has no key "token"`)
    return Buffer.from(token, 'base64').toString('utf8').replace(/\r?\n$/, '')
  }
}

/** The control plane the flags name, started; a missing Local file is NoControlPlaneError, never a new empty one. */
export async function openControlPlane(values: { 'data-dir'?: string; 'control-plane'?: string; kubeconfig?: string }): Promise<OpenedControlPlane> {
  const kind = values['control-plane'] ?? 'local'
  const logger = createLogger('control-plane', 'warn')
  let cp: ControlPlane
  let kubeConfig: KubeConfig | undefined
  if (kind === 'local') {
    const path = join(resolvePath(values['data-dir'] ?? '.cairn'), 'control-plane.sqlite')
    await access(path).catch((err: unknown) => {
      throw new NoControlPlaneError(`no control plane at ${path}; run 'cairn dev' first or pass --control-plane kubernetes`, { cause: err })
    })
    const { LocalControlPlane } = await import('../../control-plane/local/local-control-plane.js')
    cp = new LocalControlPlane({ path }, { logger })
  } else if (kind === 'kubernetes') {
    const k = await import('../../control-plane/kubernetes/kubernetes-control-plane.js')
    kubeConfig = k.loadKubeConfig(values.kubeconfig === undefined ? { inCluster: true } : { path: values.kubeconfig })
    cp = k.createKubernetesControlPlane({ kubeConfig }, { logger })
  } else {
    throw new CliUsageError(`--control-plane must be local or kubernetes, got ${JSON.stringify(kind)}`)
  }
  await cp.start()
  return { cp, ...(kubeConfig === undefined ? {} : { kubeConfig }), close: () => cp.stop() }
}

export const command: Command = {
  summary: 'collect garbage now: mark from heads, snapshots and pins, sweep unreferenced shards older than the grace period',
  async run(argv) {
    return runCli('gc', formatFromArgv(argv), () => collectOnce(argv))
  },
}

async function collectOnce(argv: readonly string[]): Promise<void> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...CONTROL_PLANE_FLAGS, grace: { type: 'string', default: '1h' }, 'dry-run': { type: 'boolean', default: false }, 'cluster-token-file': { type: 'string' }, namespace: { type: 'string', default: 'cairn-system' } },
      allowPositionals: false,
      strict: true,
    })
  } catch (err) {
    throw new CliUsageError(`${(err as Error).message}; usage: ${USAGE}`, { cause: err })
  }
  const v = parsed.values
  const format = outputFormat(v.output)
  const gracePeriodMs = parseDurationMs(v.grace)
  const token = await loadClusterToken({ clusterTokenFile: v['cluster-token-file'] })
  const opened = await openControlPlane(v)
  const { GarbageCollector } = await import('../../engine/gc/index.js')
  // In a cluster the nodes want the block store's token: from the file if given, else from its Secret.
  const tokenFor = token === undefined && opened.kubeConfig !== undefined ? kubernetesClusterToken(opened.kubeConfig, v.namespace) : undefined
  const gc = new GarbageCollector(token === undefined ? {} : { token }, { controlPlane: opened.cp, logger: createLogger('gc', 'warn'), ...(tokenFor === undefined ? {} : { tokenFor }) })
  await gc.start()
  try {
    const report = await gc.run(v['block-store'], { gracePeriodMs, dryRun: v['dry-run'] })
    if (format === 'json') {
      console.log(JSON.stringify(report))
      return
    }
    console.log(
      `${report.dryRun ? 'dry run: would sweep' : 'swept'} ${report.sweptShards} shards, ${report.freedBytes} bytes, ` +
        `after marking ${report.markedChunks} chunks in ${report.markedPages} pages (${report.durationMs} ms; kept ${report.youngShards} younger than the grace period); ` +
        `${report.dryRun ? 'would collect' : 'collected'} ${report.collectedJournals} journal replicas no longer needed, ${report.journalFreedBytes} bytes`,
    )
    printTable(
      ['NODE', 'SCANNED', 'SWEPT', 'FREED_BYTES', 'YOUNG', 'JOURNALS_COLLECTED'],
      report.nodes.map((n) => [n.id, String(n.scannedShards), String(n.deletedShards), String(n.freedBytes), String(n.youngShards), String(n.journals.collectedJournals)]),
    )
  } finally {
    await gc.stop()
    await opened.close()
  }
}
