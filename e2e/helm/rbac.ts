/**
 * A small RBAC evaluator over rendered manifests: which ServiceAccount may do
 * what, following the bindings the way kube-apiserver's RBAC authorizer does
 * (union of the rules of every bound role; "*" matches anything).
 */
import type { Manifest } from './helm.js'

export interface PolicyRule {
  apiGroups?: string[]
  resources?: string[]
  verbs: string[]
  resourceNames?: string[]
  nonResourceURLs?: string[]
}

/** One request to authorize; `namespace` undefined means a cluster-scoped request or all namespaces. */
export interface Access {
  group: string
  resource: string
  verb: string
  namespace?: string
  /** The object's name; a rule with resourceNames allows only requests naming one of them. */
  name?: string
}

interface Binding {
  roleKind: 'Role' | 'ClusterRole'
  roleName: string
  /** Where the grant applies: a RoleBinding's namespace, or everywhere. */
  namespace?: string
  subjects: Array<{ kind: string; name: string; namespace?: string }>
}

function rulesOf(m: Manifest): PolicyRule[] {
  return (m.rules as PolicyRule[] | undefined) ?? []
}

function bindings(manifests: readonly Manifest[]): Binding[] {
  return manifests
    .filter((m) => m.kind === 'RoleBinding' || m.kind === 'ClusterRoleBinding')
    .map((m) => {
      const roleRef = m.roleRef as { kind: 'Role' | 'ClusterRole'; name: string }
      return {
        roleKind: roleRef.kind,
        roleName: roleRef.name,
        namespace: m.kind === 'RoleBinding' ? m.metadata.namespace : undefined,
        subjects: (m.subjects as Binding['subjects'] | undefined) ?? [],
      }
    })
}

function matches(list: string[] | undefined, value: string): boolean {
  return list !== undefined && (list.includes('*') || list.includes(value))
}

function ruleAllows(rule: PolicyRule, access: Access): boolean {
  const named = rule.resourceNames === undefined || rule.resourceNames.length === 0 || (access.name !== undefined && rule.resourceNames.includes(access.name))
  return named && matches(rule.apiGroups, access.group) && matches(rule.resources, access.resource) && matches(rule.verbs, access.verb)
}

/** The rules that apply to `serviceAccount` in `namespace` (undefined: cluster-wide grants only). */
export function rulesFor(manifests: readonly Manifest[], serviceAccount: { name: string; namespace: string }, namespace?: string): PolicyRule[] {
  const rules: PolicyRule[] = []
  for (const b of bindings(manifests)) {
    const bound = b.subjects.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount.name && s.namespace === serviceAccount.namespace)
    if (!bound) continue
    if (b.namespace !== undefined && b.namespace !== namespace) continue
    const role = manifests.find(
      (m) => m.kind === b.roleKind && m.metadata.name === b.roleName && (b.roleKind === 'ClusterRole' || m.metadata.namespace === b.namespace),
    )
    if (role !== undefined) rules.push(...rulesOf(role))
  }
  return rules
}

/** Whether `serviceAccount` may perform `access`. */
export function can(manifests: readonly Manifest[], serviceAccount: { name: string; namespace: string }, access: Access): boolean {
  return rulesFor(manifests, serviceAccount, access.namespace).some((r) => ruleAllows(r, access))
}

/** Every (group, resource, verb) a list of rules grants, as "group/resource:verb" strings, sorted. */
export function grants(rules: readonly PolicyRule[]): string[] {
  const out = new Set<string>()
  for (const rule of rules) {
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? []) {
        for (const verb of rule.verbs) out.add(`${group}/${resource}:${verb}`)
      }
    }
  }
  return [...out].sort()
}

/** Roles and ClusterRoles among the manifests. */
export function roles(manifests: readonly Manifest[]): Manifest[] {
  return manifests.filter((m) => m.kind === 'Role' || m.kind === 'ClusterRole')
}

export { rulesOf }
