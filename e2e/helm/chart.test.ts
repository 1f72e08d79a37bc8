/**
 * The Helm chart, through the real Helm v4 binary: lint, render for three sets
 * of values, validate every rendered object, refuse bad values, ship crds/ unchanged.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import yaml from 'js-yaml'
import { CHART_DIR, FIXTURES_DIR, OPTIONAL_APIS, ROOT, describe, find, helm, render, type Manifest, type RenderOptions } from './helm.js'
import { validateAll } from './validate.js'

const SCENARIOS: Record<string, RenderOptions> = {
  defaults: {},
  'every option on': { valuesFiles: ['values-all.yaml'], apiVersions: OPTIONAL_APIS },
  'defaults off': { valuesFiles: ['values-minimal.yaml'] },
}

const chart = yaml.load(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as { appVersion: string }

interface Container {
  name: string
  image: string
  args?: string[]
  env?: Array<{ name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>
  securityContext?: { privileged?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean }
  volumeMounts?: Array<{ name: string; mountPath: string; mountPropagation?: string }>
}

function podSpec(m: Manifest): { containers: Container[]; serviceAccountName: string; volumes?: Array<{ name: string; hostPath?: { path: string } }> } {
  return (m.spec as { template: { spec: ReturnType<typeof podSpec> } }).template.spec
}

function container(m: Manifest, name: string): Container {
  const found = podSpec(m).containers.find((c) => c.name === name)
  assert.ok(found, `${describe(m)} has no container ${name}`)
  return found
}

test('helm lint --strict reports nothing for the defaults, every option on, and the defaults off', () => {
  for (const [scenario, options] of Object.entries(SCENARIOS)) {
    const args = ['lint', '--strict', CHART_DIR, '--namespace', 'cairn-system']
    for (const file of options.valuesFiles ?? []) args.push('-f', join(FIXTURES_DIR, file))
    const { stdout } = helm(args)
    assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, scenario)
    assert.doesNotMatch(stdout, /\[(INFO|WARNING|ERROR)\]/, `${scenario}: ${stdout}`)
  }
})

for (const [scenario, options] of Object.entries(SCENARIOS)) {
  test(`every manifest rendered with ${scenario} validates against the Kubernetes schemas and crds/`, async () => {
    const manifests = render(options)
    assert.ok(manifests.length > 10, `only ${manifests.length} objects rendered`)
    const problems = await validateAll(manifests)
    assert.deepEqual(problems, [])
  })
}

test('a manifest with an unknown field, a wrong type or a CR breaking its CRD fails validation', async () => {
  const manifests = render({})
  const broken = structuredClone(manifests)
  const node = find(broken, 'DaemonSet', 'cairn-csi-node')
  ;(podSpec(node).containers[0] as unknown as Record<string, unknown>).mountPropagaton = 'Bidirectional'
  ;(find(broken, 'Deployment', 'cairn-operator').spec as Record<string, unknown>).replicas = 'two'
  ;(find(broken, 'StoragePolicy', 'ec-4-2').spec as Record<string, unknown>).parityShards = 40
  const problems = await validateAll(broken)
  assert.ok(problems.some((p) => p.startsWith('DaemonSet/cairn-csi-node:') && p.includes('mountPropagaton')), problems.join('\n'))
  assert.ok(problems.some((p) => p.startsWith('Deployment/cairn-operator:')), problems.join('\n'))
  assert.ok(problems.some((p) => p.startsWith('StoragePolicy/ec-4-2:') && p.includes('parityShards')), problems.join('\n'))
})

test('the defaults install a BlockStore, replicated-3 as 1+2 and ec-4-2 as 4+2, each with its StorageClass', () => {
  const manifests = render({})
  const store = find(manifests, 'BlockStore', 'default')
  assert.equal((store.spec as { image: string }).image, `cairn:${chart.appVersion}`)
  for (const [name, k, m] of [['replicated-3', 1, 2], ['ec-4-2', 4, 2]] as const) {
    const spec = find(manifests, 'StoragePolicy', name).spec as Record<string, unknown>
    assert.deepEqual([spec.dataShards, spec.parityShards, spec.blockStore], [k, m, 'default'])
    const sc = find(manifests, 'StorageClass', `cairn-${name}`)
    assert.equal(sc.provisioner, 'csi.cairn.dev')
    assert.deepEqual(sc.parameters, { storagePolicy: name, blockStore: 'default', 'csi.storage.k8s.io/fstype': 'ext4' })
    assert.equal(sc.allowVolumeExpansion, true)
    assert.equal(sc.volumeBindingMode, 'WaitForFirstConsumer')
  }
  // Data-bearing objects outlive `helm uninstall`.
  for (const m of manifests.filter((x) => x.apiVersion === 'cairn.dev/v1alpha1')) {
    assert.equal(m.metadata.annotations?.['helm.sh/resource-policy'], 'keep', describe(m))
  }
  // Without the snapshot API (plain `helm template`) no VolumeSnapshotClass; monitoring is opt-in.
  assert.deepEqual(manifests.filter((m) => ['VolumeSnapshotClass', 'ServiceMonitor', 'ConfigMap'].includes(m.kind)), [])
})

test('every object carries the recommended labels and images are pinned, the Cairn tag defaulting to appVersion', () => {
  const manifests = render({})
  for (const m of manifests) {
    const labels = m.metadata.labels ?? {}
    for (const key of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/version', 'app.kubernetes.io/part-of', 'app.kubernetes.io/managed-by', 'helm.sh/chart']) {
      assert.ok(labels[key], `${describe(m)} lacks ${key}`)
    }
  }
  const workloads = manifests.filter((m) => m.kind === 'Deployment' || m.kind === 'DaemonSet')
  assert.equal(workloads.length, 3)
  for (const w of workloads) {
    for (const c of podSpec(w).containers) {
      if (c.name === 'cairn' || c.name === 'operator') assert.equal(c.image, `cairn:${chart.appVersion}`)
      else assert.match(c.image, /^registry\.k8s\.io\/sig-storage\/[a-z-]+:v\d+\.\d+\.\d+$/, `${describe(w)} ${c.name}`)
    }
  }
  const controller = find(manifests, 'Deployment', 'cairn-csi-controller')
  assert.deepEqual(podSpec(controller).containers.map((c) => c.name).sort(), ['cairn', 'csi-attacher', 'csi-provisioner', 'csi-resizer', 'csi-snapshotter', 'liveness-probe'])
})

test('the node plugin is privileged, gets its node id from spec.nodeName and shares mounts with kubelet', () => {
  const manifests = render({ valuesFiles: ['values-all.yaml'] })
  const node = find(manifests, 'DaemonSet', 'cairn-csi-node')
  const plugin = container(node, 'cairn')
  assert.equal(plugin.securityContext?.privileged, true)
  assert.deepEqual(plugin.args?.slice(0, 5), ['csi', '--mode=node', '--endpoint=unix:///csi/csi.sock', '--default-block-store=fast', '--node-id=$(NODE_ID)'])
  // Its engines find their block store's cluster-token Secret in the release namespace.
  assert.equal(plugin.env?.find((e) => e.name === 'CAIRN_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace')
  assert.equal(plugin.env?.find((e) => e.name === 'NODE_ID')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName')
  // values-all sets kubeletDir with a trailing slash: paths must come out clean.
  const kubelet = plugin.volumeMounts?.find((v) => v.name === 'kubelet-dir')
  assert.deepEqual(kubelet, { name: 'kubelet-dir', mountPath: '/var/lib/k0s/kubelet', mountPropagation: 'Bidirectional' })
  assert.deepEqual(plugin.volumeMounts?.map((v) => v.mountPath).sort(), ['/csi', '/dev', '/lib/modules', '/sys', '/var/lib/k0s/kubelet'])
  const hostPaths = Object.fromEntries((podSpec(node).volumes ?? []).map((v) => [v.name, v.hostPath?.path]))
  assert.equal(hostPaths['plugin-dir'], '/var/lib/k0s/kubelet/plugins/csi.cairn.dev')
  assert.equal(hostPaths['registration-dir'], '/var/lib/k0s/kubelet/plugins_registry')
  const registrar = container(node, 'node-driver-registrar')
  assert.ok(registrar.args?.includes('--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/csi.cairn.dev/csi.sock'))
  assert.notEqual(container(node, 'liveness-probe').securityContext?.privileged, true)
  // Only the node plugin container is privileged, anywhere in the chart.
  const privileged = manifests.flatMap((m) => (m.kind === 'Deployment' || m.kind === 'DaemonSet' ? podSpec(m).containers.map((c) => [describe(m), c] as const) : []))
    .filter(([, c]) => c.securityContext?.privileged === true)
    .map(([owner, c]) => `${owner}/${c.name}`)
  assert.deepEqual(privileged, ['DaemonSet/cairn-csi-node/cairn'])
})

test('the CSIDriver, operator and controller are wired as the CSI spec and leader election need', () => {
  const manifests = render({ valuesFiles: ['values-all.yaml'], apiVersions: OPTIONAL_APIS })
  const driver = find(manifests, 'CSIDriver', 'csi.cairn.dev')
  assert.deepEqual(driver.spec, {
    attachRequired: true,
    podInfoOnMount: true,
    volumeLifecycleModes: ['Persistent'],
    fsGroupPolicy: 'ReadWriteOnceWithFSType',
    storageCapacity: false,
    requiresRepublish: false,
  })
  const operator = find(manifests, 'Deployment', 'cairn-operator')
  assert.equal((operator.spec as { replicas: number }).replicas, 3)
  assert.deepEqual(container(operator, 'operator').args, ['operator', '--namespace=cairn-system', '--lease-name=cairn-leader', '--metrics-listen=0.0.0.0:9808'])
  const digest = 'registry.example.com/cairn@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
  assert.equal(container(operator, 'operator').image, digest)
  const controller = find(manifests, 'Deployment', 'cairn-csi-controller')
  assert.deepEqual(container(controller, 'cairn').args, ['csi', '--mode=controller', '--endpoint=unix:///csi/csi.sock', '--default-block-store=fast', '--metrics-listen=0.0.0.0:9809'])
  assert.equal(container(controller, 'cairn').env?.find((e) => e.name === 'CAIRN_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace')
  for (const c of podSpec(controller).containers.filter((x) => x.name.startsWith('csi-'))) {
    assert.ok(c.args?.includes('--leader-election'), c.name)
    assert.ok(c.args?.includes('--leader-election-namespace=cairn-system'), c.name)
  }
})

test('every option on renders the ServiceMonitor, the dashboard ConfigMap and the VolumeSnapshotClass', () => {
  const manifests = render({ valuesFiles: ['values-all.yaml'], apiVersions: OPTIONAL_APIS })
  const monitor = find(manifests, 'ServiceMonitor', 'cairn')
  assert.equal(monitor.metadata.labels?.release, 'kube-prometheus-stack')
  const services = manifests.filter((m) => m.kind === 'Service')
  const selector = (monitor.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels
  // Each metrics Service of the chart is selected and exposes the port the ServiceMonitor scrapes.
  assert.equal(services.length, 3)
  for (const s of services) {
    for (const [k, v] of Object.entries(selector)) assert.equal(s.metadata.labels?.[k], v, describe(s))
    assert.deepEqual((s.spec as { ports: Array<{ name: string }> }).ports.map((p) => p.name), ['metrics'])
  }
  const snapshotClass = find(manifests, 'VolumeSnapshotClass', 'cairn-snapshots')
  assert.deepEqual([snapshotClass.driver, snapshotClass.deletionPolicy], ['csi.cairn.dev', 'Retain'])
  assert.equal(snapshotClass.metadata.annotations?.['snapshot.storage.kubernetes.io/is-default-class'], 'true')
  const dashboard = find(manifests, 'ConfigMap', 'cairn-dashboard')
  assert.equal(dashboard.metadata.namespace, 'monitoring')
  assert.equal(dashboard.metadata.labels?.grafana_dashboard, '1')
  const json = JSON.parse((dashboard.data as Record<string, string>)['cairn.json'] as string) as {
    panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>
  }
  const rows = json.panels.filter((p) => p.type === 'row').map((p) => p.title)
  assert.deepEqual(rows, ['Volume I/O', 'Flush latency', 'Repair backlog', 'Capacity', 'Garbage collection'])
  const exprs = json.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr)
  assert.ok(exprs.length >= 10)
  for (const expr of exprs) {
    const metrics = expr.match(/\b[a-z_]+(?=[{[)\s])/g)?.filter((n) => n.startsWith('cairn_')) ?? []
    assert.ok(metrics.length > 0, `panel query names no cairn_ metric: ${expr}`)
  }
  assert.ok(exprs.some((e) => e.includes('command="flush"')), 'no flush latency query')
  assert.ok(exprs.some((e) => e.includes('cairn_operator_gc_runs_total{outcome="failed"}')), 'no failed-GC query')
})

test('the defaults off render only the operator and the CSI driver', () => {
  const manifests = render({ valuesFiles: ['values-minimal.yaml'] })
  const kinds = new Set(manifests.map((m) => m.kind))
  for (const absent of ['BlockStore', 'StoragePolicy', 'StorageClass', 'VolumeSnapshotClass', 'ServiceMonitor', 'ConfigMap']) {
    assert.ok(!kinds.has(absent), `${absent} rendered`)
  }
  const controller = find(manifests, 'Deployment', 'cairn-csi-controller')
  assert.ok(!podSpec(controller).containers.some((c) => c.name === 'csi-snapshotter'))
  assert.ok(kinds.has('CSIDriver') && kinds.has('DaemonSet'))
})

const badFiles = readdirSync(join(FIXTURES_DIR, 'bad')).filter((f) => f.endsWith('.yaml')).sort()

test('values.schema.json and the chart checks refuse every bad values file', () => {
  assert.ok(badFiles.length >= 10)
  for (const file of badFiles) {
    assert.throws(
      () => render({ valuesFiles: [join(FIXTURES_DIR, 'bad', file)] }),
      { name: 'HelmFailedError' },
      `${file} was accepted`,
    )
  }
  // The same command line with the good fixtures succeeds, so the failures above come from the values.
  assert.ok(render({ valuesFiles: ['values-all.yaml'] }).length > 0)
})

test('the chart ships exactly the CRDs of crds/', () => {
  const source = readdirSync(join(ROOT, 'crds')).sort()
  const shipped = readdirSync(join(CHART_DIR, 'crds')).sort()
  assert.deepEqual(shipped, source, 'helm/cairn/crds/ must hold the same files as crds/ (copy them: cp crds/*.yaml helm/cairn/crds/)')
  for (const file of source) {
    const a = readFileSync(join(ROOT, 'crds', file), 'utf8')
    const b = readFileSync(join(CHART_DIR, 'crds', file), 'utf8')
    assert.ok(a === b, `helm/cairn/crds/${file} differs from crds/${file}; copy it again`)
  }
  const rendered = render({ includeCrds: true }).filter((m) => m.kind === 'CustomResourceDefinition')
  assert.deepEqual(rendered.map((m) => m.metadata.name).sort(), ['blockstores.cairn.dev', 'snapshots.cairn.dev', 'storagepolicies.cairn.dev', 'volumes.cairn.dev'])
})
