// `cairn operator` as real processes against the test API server: SIGKILL in
// the middle of a reconcile and a restart converge to the same state, and of
// two operators running at once only the leader writes.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { ownedNames, storageNodeLabel } from './constants.js'
import { NAMESPACE, createCr, createNode, getCr, startCluster, waitFor, type Cluster } from './test-support.js'
import type { BlockStoreObject } from './types.js'

const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url))
let c: Cluster
const children = new Set<ChildProcess>()

interface Running {
  child: ChildProcess
  metricsUrl: string
  exited: Promise<number | null>
}

/** Starts `cairn operator` and resolves once its metrics server listens. */
async function startOperator(identity: string): Promise<Running> {
  const child = spawn(process.execPath, [MAIN, 'operator', '--kubeconfig', c.kubeconfigPath, '--namespace', NAMESPACE, '--identity', identity,
    '--metrics-listen', '127.0.0.1:0', '--lease-duration-ms', '2000', '--renew-deadline-ms', '1500', '--retry-period-ms', '200', '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { children.delete(child); resolve(code) }))
  const metricsUrl = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream })
    // Generous: on the shared 2-core machine loading the CLI alone has taken over 15 s of wall time.
    const timer = setTimeout(() => reject(new Error(`${identity}: no metrics address in its log`)), 90_000)
    lines.on('line', (line) => {
      const address = (JSON.parse(line) as { address?: string }).address
      if (address !== undefined) {
        clearTimeout(timer)
        resolve(`http://${address}/metrics`)
      }
    })
    child.once('exit', () => reject(new Error(`${identity} exited before listening`)))
  })
  return { child, metricsUrl, exited }
}

async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(url)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue
    if (labels !== '' && !line.includes(labels)) continue
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

/** Writes other than the lease (which every candidate renews or tries to take). */
async function nonLeaseWrites(url: string): Promise<number> {
  return (await metric(url, 'cairn_operator_api_writes_total')) - (await metric(url, 'cairn_operator_api_writes_total', 'kind="Lease"'))
}

async function labelled(key: string): Promise<string[]> {
  return (await c.core.listNode({ labelSelector: `${key}=true` })).items.map((n) => n.metadata?.name as string).sort()
}

async function converged(name: string, nodes: string[]): Promise<BlockStoreObject | undefined> {
  if (JSON.stringify(await labelled(storageNodeLabel(name))) !== JSON.stringify(nodes)) return undefined
  const bs = await getCr<BlockStoreObject>(c, 'BlockStore', name)
  const members = bs?.status?.clusterMap?.members.map((m) => m.id) ?? []
  return JSON.stringify(members) === JSON.stringify(nodes) && bs?.status?.observedGeneration === 1 ? bs : undefined
}

before(async () => {
  c = await startCluster()
  for (const n of ['k1', 'k2', 'k3']) await createNode(c, n, { labels: { 'cairn.dev/role': 'storage' } })
  await createNode(c, 'k4', { labels: { 'cairn.dev/role': 'storage' }, memory: '512Mi' })
  await createNode(c, 'k5')
})

after(async () => {
  for (const child of children) child.kill('SIGKILL')
  await c.close()
})

describe('cairn operator processes', () => {
  it('SIGKILL mid-reconcile, then a restart, converges to the same state without a spurious epoch', async () => {
    const first = await startOperator('op-a')
    await waitFor('op-a leads', async () => (await metric(first.metricsUrl, 'cairn_operator_is_leader')) === 1)
    await createCr(c, 'BlockStore', 'crash', { nodeSelector: { matchLabels: { 'cairn.dev/role': 'storage' } } })
    // Kill it as soon as the first label lands: labels are written before the DaemonSet and the status.
    await waitFor('a first label', async () => (await labelled(storageNodeLabel('crash'))).length > 0, 10_000)
    first.child.kill('SIGKILL')
    await first.exited
    const second = await startOperator('op-b')
    const bs = await waitFor('convergence after restart', () => converged('crash', ['k1', 'k2', 'k3']), 20_000)
    assert.equal(bs.status?.clusterMap?.epoch, 1, 'one membership, one epoch')
    const names = ownedNames('crash')
    const ds = await c.apps.readNamespacedDaemonSet({ name: names.daemonSet, namespace: NAMESPACE })
    assert.deepEqual(ds.spec?.template.spec?.nodeSelector, { [storageNodeLabel('crash')]: 'true' })
    const token = (await c.core.readNamespacedSecret({ name: names.secret, namespace: NAMESPACE })).data?.token
    // Restarting once more must change nothing: same token, same epoch, same resourceVersion.
    second.child.kill('SIGKILL')
    await second.exited
    const third = await startOperator('op-c')
    await waitFor('op-c leads', async () => (await metric(third.metricsUrl, 'cairn_operator_is_leader')) === 1, 10_000)
    await waitFor('op-c idle', async () => (await metric(third.metricsUrl, 'cairn_operator_reconcile_duration_seconds_count', 'kind="BlockStore"')) > 0)
    const again = await converged('crash', ['k1', 'k2', 'k3'])
    assert.equal(again?.metadata.resourceVersion, bs.metadata.resourceVersion, 'a converged BlockStore is not rewritten')
    assert.equal((await c.core.readNamespacedSecret({ name: names.secret, namespace: NAMESPACE })).data?.token, token, 'the token is never rotated by a restart')
    third.child.kill('SIGTERM')
    assert.equal(await third.exited, 0)
  })

  it('two operators at once: only the leader writes; the other takes over when it stops', async () => {
    const a = await startOperator('twin-a')
    const b = await startOperator('twin-b')
    const leaderOf = async (): Promise<Running | undefined> => {
      const [la, lb] = [await metric(a.metricsUrl, 'cairn_operator_is_leader'), await metric(b.metricsUrl, 'cairn_operator_is_leader')]
      return la + lb === 1 ? (la === 1 ? a : b) : undefined
    }
    const leader = await waitFor('exactly one leader', leaderOf, 10_000)
    const follower = leader === a ? b : a
    await createCr(c, 'BlockStore', 'twins', { nodeSelector: { matchLabels: { 'cairn.dev/role': 'storage' } } })
    await waitFor('twins converged', () => converged('twins', ['k1', 'k2', 'k3']), 15_000)
    assert.ok((await nonLeaseWrites(leader.metricsUrl)) > 0, 'the leader wrote')
    assert.equal(await nonLeaseWrites(follower.metricsUrl), 0, 'the follower wrote nothing but lease attempts')
    // SIGTERM releases the lease: the follower takes over and reconciles a change.
    leader.child.kill('SIGTERM')
    assert.equal(await leader.exited, 0)
    await waitFor('follower leads', async () => (await metric(follower.metricsUrl, 'cairn_operator_is_leader')) === 1, 10_000)
    await createNode(c, 'k6', { labels: { 'cairn.dev/role': 'storage' } })
    await waitFor('k6 joins', async () => (await labelled(storageNodeLabel('twins'))).includes('k6'), 10_000)
    assert.ok((await nonLeaseWrites(follower.metricsUrl)) > 0)
    follower.child.kill('SIGTERM')
    await follower.exited
  })
})
