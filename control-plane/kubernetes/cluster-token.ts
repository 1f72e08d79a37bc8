/**
 * A block store's cluster token as a process in the cluster reads it: the `token` key
 * of the `cairn-storage-<block store>-token` Secret the operator creates in its
 * namespace. Engines send it to storage nodes; node plugins require it on their admin
 * API; the controller sends it there.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node'
import { ConfigError } from '../../core/errors.js'
import { clusterTokenSecretName } from './constants.js'

/** The token, or undefined when the Secret does not exist (yet: the operator creates it with the block store's storage nodes). */
export async function readClusterToken(kubeConfig: KubeConfig, namespace: string, blockStore: string): Promise<string | undefined> {
  const name = clusterTokenSecretName(blockStore)
  let secret
  try {
    secret = await kubeConfig.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace })
  } catch (err) {
    if ((err as { code?: unknown }).code === 404) return undefined
    throw new ConfigError(`cannot read the cluster token from Secret ${namespace}/${name}: ${(err as Error).message}`, { cause: err })
  }
  const encoded = secret.data?.token
  if (encoded === undefined) throw new ConfigError(`Secret ${namespace}/${name} has no key "token"`)
  return Buffer.from(encoded, 'base64').toString('utf8')
}

/** {@link readClusterToken}, remembered once found; asked again while the Secret is missing. */
export function cachedClusterToken(kubeConfig: KubeConfig, namespace: string, blockStore: string): () => Promise<string | undefined> {
  let found: string | undefined
  return async () => (found ??= await readClusterToken(kubeConfig, namespace, blockStore))
}
