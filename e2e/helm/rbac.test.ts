/**
 * Least privilege in the rendered RBAC: separate identities, no wildcards, and
 * exactly the grants each component needs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { OPTIONAL_APIS, describe, render, type Manifest } from './helm.js'
import { can, grants, roles, rulesFor, rulesOf } from './rbac.js'
import { STORAGE_NODE_SERVICE_ACCOUNT } from '../../operator/constants.js'

const NS = 'cairn-system'
const operator = { name: 'cairn-operator', namespace: NS }
const controller = { name: 'cairn-csi-controller', namespace: NS }
const node = { name: 'cairn-csi-node', namespace: NS }
const storageNode = { name: STORAGE_NODE_SERVICE_ACCOUNT, namespace: NS }

const scenarios: Manifest[][] = [
  render({}),
  render({ valuesFiles: ['values-all.yaml'], apiVersions: OPTIONAL_APIS }),
  render({ valuesFiles: ['values-minimal.yaml'] }),
]
const all = scenarios[1] as Manifest[]

test('no role grants a wildcard verb, resource or API group, nor non-resource URLs', () => {
  for (const manifests of scenarios) {
    for (const role of roles(manifests)) {
      for (const rule of rulesOf(role)) {
        for (const list of [rule.verbs, rule.resources ?? [], rule.apiGroups ?? []]) {
          assert.ok(!list.some((x) => x.includes('*')), `${describe(role)} has a wildcard: ${JSON.stringify(rule)}`)
        }
        assert.equal(rule.nonResourceURLs, undefined, describe(role))
        assert.ok((rule.resources ?? []).length > 0, `${describe(role)} has a rule without resources`)
      }
    }
  }
})

test('each component runs as its own ServiceAccount, bound only to its own roles', () => {
  const accounts = all.filter((m) => m.kind === 'ServiceAccount').map((m) => m.metadata.name).sort()
  assert.deepEqual(accounts, ['cairn-csi-controller', 'cairn-csi-node', 'cairn-operator', STORAGE_NODE_SERVICE_ACCOUNT])
  const workloads = all.filter((m) => m.kind === 'Deployment' || m.kind === 'DaemonSet')
  // The storage-node DaemonSets are the operator's (operator/storage-node-objects.ts), not the chart's.
  const used = [...workloads.map((w) => (w.spec as { template: { spec: { serviceAccountName: string } } }).template.spec.serviceAccountName), STORAGE_NODE_SERVICE_ACCOUNT].sort()
  assert.deepEqual(used, accounts)
  for (const binding of all.filter((m) => m.kind.endsWith('Binding'))) {
    const subjects = binding.subjects as Array<{ kind: string; name: string; namespace: string }>
    const roleRef = binding.roleRef as { kind: string; name: string }
    assert.equal(subjects.length, 1, describe(binding))
    assert.equal(subjects[0]?.name, roleRef.name, `${describe(binding)} binds another component's role`)
    assert.equal(subjects[0]?.namespace, NS)
    assert.ok(all.some((m) => m.kind === roleRef.kind && m.metadata.name === roleRef.name), `${describe(binding)} names a missing role`)
  }
})

test('namespaced grants (Leases, Secrets, owned workloads) live in Roles of the release namespace only', () => {
  for (const manifests of scenarios) {
    for (const role of roles(manifests)) {
      const granted = grants(rulesOf(role))
      if (role.kind === 'Role') {
        assert.equal(role.metadata.namespace, NS, describe(role))
        continue
      }
      for (const g of granted) {
        assert.ok(!/^coordination\.k8s\.io\/leases:/.test(g), `${describe(role)} grants leases cluster-wide`)
        assert.ok(!/^\/secrets:/.test(g), `${describe(role)} grants secrets cluster-wide`)
        assert.ok(!/^apps\/daemonsets:/.test(g), `${describe(role)} grants daemonsets cluster-wide`)
      }
    }
  }
  for (const sa of [operator, controller]) {
    assert.ok(can(all, sa, { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: NS }))
    assert.ok(!can(all, sa, { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: 'kube-system' }))
  }
})

test('the operator only watches pods of its namespace, never writes or execs into them, and reaches only what it reconciles', () => {
  for (const manifests of scenarios) {
    for (const verb of ['get', 'create', 'update', 'delete', 'deletecollection', 'patch']) {
      for (const resource of ['pods', 'pods/exec', 'pods/attach', 'pods/portforward', 'pods/status']) {
        for (const namespace of [NS, undefined]) {
          assert.ok(!can(manifests, operator, { group: '', resource, verb, namespace }), `operator may ${verb} ${resource} in ${namespace ?? 'the cluster'}`)
        }
      }
    }
    // Its pod informer: storage-node readiness and IPs are the members' states and addresses (operator-rbac.test.ts runs it under these rules).
    for (const verb of ['list', 'watch']) {
      assert.ok(can(manifests, operator, { group: '', resource: 'pods', verb, namespace: NS }), `operator must ${verb} pods in ${NS}`)
      assert.ok(!can(manifests, operator, { group: '', resource: 'pods', verb }), `operator may ${verb} pods cluster-wide`)
      assert.ok(!can(manifests, operator, { group: '', resource: 'pods', verb, namespace: 'default' }), `operator may ${verb} pods in default`)
    }
  }
  assert.ok(can(all, operator, { group: '', resource: 'nodes', verb: 'patch' }), 'operator must label eligible nodes')
  assert.ok(!can(all, operator, { group: '', resource: 'nodes', verb: 'delete' }))
  assert.ok(can(all, operator, { group: 'apps', resource: 'daemonsets', verb: 'create', namespace: NS }))
  assert.ok(!can(all, operator, { group: 'apps', resource: 'daemonsets', verb: 'create', namespace: 'default' }))
  assert.ok(can(all, operator, { group: 'cairn.dev', resource: 'blockstores/status', verb: 'update' }))
  assert.ok(!can(all, operator, { group: 'cairn.dev', resource: 'blockstores', verb: 'delete' }), 'operator must not delete user CRs')
  assert.ok(!can(all, operator, { group: '', resource: 'secrets', verb: 'get', namespace: 'kube-system' }))
})

test('the node plugin holds exactly the grants NodeStage needs', () => {
  for (const manifests of scenarios) {
    assert.deepEqual(grants(rulesFor(manifests, node)), [
      'cairn.dev/blockstores:get',
      'cairn.dev/blockstores:list',
      'cairn.dev/blockstores:watch',
      'cairn.dev/storagepolicies:get',
      'cairn.dev/storagepolicies:list',
      'cairn.dev/storagepolicies:watch',
      'cairn.dev/volumes/status:get',
      'cairn.dev/volumes/status:patch',
      'cairn.dev/volumes/status:update',
      'cairn.dev/volumes:get',
      'cairn.dev/volumes:list',
      'cairn.dev/volumes:watch',
    ])
    // Cluster credentials: read-only, and only in the release namespace.
    assert.deepEqual(grants(rulesFor(manifests, node, NS)).filter((g) => !g.startsWith('cairn.dev/')), ['/secrets:get'])
  }
})

test('the storage nodes may only read BlockStores (their cluster map); the operator may create their account', () => {
  for (const manifests of scenarios) {
    assert.deepEqual(grants(rulesFor(manifests, storageNode)), ['cairn.dev/blockstores:get', 'cairn.dev/blockstores:list', 'cairn.dev/blockstores:watch'])
    assert.deepEqual(grants(rulesFor(manifests, storageNode, NS)), ['cairn.dev/blockstores:get', 'cairn.dev/blockstores:list', 'cairn.dev/blockstores:watch'])
    assert.ok(can(manifests, operator, { group: '', resource: 'serviceaccounts', verb: 'create', namespace: NS }))
    assert.ok(!can(manifests, operator, { group: '', resource: 'serviceaccounts', verb: 'create', namespace: 'kube-system' }))
  }
})

test('the CSI controller can provision, attach, resize and snapshot but never exec, read other secrets or edit nodes', () => {
  const needs: Array<[string, string, string]> = [
    ['', 'persistentvolumes', 'create'],
    ['', 'persistentvolumeclaims', 'update'],
    ['storage.k8s.io', 'volumeattachments/status', 'patch'],
    ['', 'persistentvolumeclaims/status', 'patch'],
    ['snapshot.storage.k8s.io', 'volumesnapshotcontents/status', 'update'],
    ['cairn.dev', 'volumes', 'create'],
    ['cairn.dev', 'snapshots', 'delete'],
  ]
  for (const [group, resource, verb] of needs) assert.ok(can(all, controller, { group, resource, verb }), `${group}/${resource}:${verb}`)
  for (const [group, resource, verb] of [
    ['', 'pods/exec', 'create'],
    ['', 'secrets', 'get'],
    ['', 'nodes', 'patch'],
    ['', 'pods', 'delete'],
    ['cairn.dev', 'blockstores', 'update'],
  ] as const) {
    assert.ok(!can(all, controller, { group, resource, verb, namespace: NS }), `${group}/${resource}:${verb}`)
  }
  // The one Secret it reads: the default block store's cluster token, to checkpoint attached volumes through node plugins.
  assert.ok(can(all, controller, { group: '', resource: 'secrets', verb: 'get', namespace: NS, name: 'cairn-storage-fast-token' }))
  assert.ok(!can(all, controller, { group: '', resource: 'secrets', verb: 'get', namespace: NS, name: 'another-secret' }))
  assert.ok(!can(all, controller, { group: '', resource: 'secrets', verb: 'list', namespace: NS }))
  // With snapshots off, the snapshotter's grants go with its sidecar.
  const minimal = scenarios[2] as Manifest[]
  assert.ok(!grants(rulesFor(minimal, controller)).some((g) => g.startsWith('snapshot.storage.k8s.io/')))
})
