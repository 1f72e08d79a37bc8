/**
 * TEST INFRASTRUCTURE: the attributes kube-apiserver's authorizer sees for a
 * request (k8s.io/apiserver request.RequestInfo): verb, API group, resource,
 * subresource, namespace and name, derived from the method and URL the same way.
 * Tests use them to enforce RBAC rules (TestApiServerOptions.authorize).
 */

/** What an authorizer decides on. Non-resource requests (discovery, /version, OpenAPI) carry only `path`. */
export interface RequestAttributes {
  /** The bearer token the client sent, standing in for the user name. */
  user: string | undefined
  /** get, list, watch, create, update, patch, delete, deletecollection (resource requests); the HTTP method lower-cased otherwise. */
  verb: string
  resourceRequest: boolean
  path: string
  group?: string
  version?: string
  resource?: string
  subresource?: string
  namespace?: string
  name?: string
}

const VERBS: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch' }

/** The authorizer's view of one request. */
export function requestAttributes(method: string, url: URL, authorization: string | undefined): RequestAttributes {
  const user = authorization?.startsWith('Bearer ') === true ? authorization.slice('Bearer '.length) : undefined
  const path = url.pathname
  let parts = path.split('/').filter((p) => p !== '')
  const nonResource: RequestAttributes = { user, verb: method.toLowerCase(), resourceRequest: false, path }
  let group: string
  if (parts[0] === 'api' && parts.length >= 3) {
    group = ''
    parts = parts.slice(1)
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    group = parts[1] as string
    parts = parts.slice(2)
  } else {
    return nonResource
  }
  const version = parts[0] as string
  parts = parts.slice(1)
  let namespace: string | undefined
  if (parts[0] === 'namespaces' && parts.length > 1) {
    namespace = parts[1]
    if (parts.length > 2) parts = parts.slice(2)
  }
  const [resource, name, subresource] = parts
  let verb: string
  if (method === 'GET' || method === 'HEAD') {
    const watch = url.searchParams.get('watch')
    verb = watch === 'true' || watch === '1' ? 'watch' : name === undefined ? 'list' : 'get'
  } else if (method === 'DELETE') verb = name === undefined ? 'deletecollection' : 'delete'
  else verb = VERBS[method] ?? method.toLowerCase()
  return { user, verb, resourceRequest: true, path, group, version, resource, subresource, namespace, name }
}

/** kube-apiserver's 403 message for a denied request. */
export function forbiddenMessage(a: RequestAttributes): string {
  if (!a.resourceRequest) return `forbidden: User "${a.user ?? 'system:anonymous'}" cannot ${a.verb} path "${a.path}"`
  const resource = a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`
  const what = a.name === undefined ? `${resource}` : `${resource} "${a.name}"`
  const where = a.namespace === undefined ? 'at the cluster scope' : `in the namespace "${a.namespace}"`
  return `${what} is forbidden: User "${a.user ?? 'system:anonymous'}" cannot ${a.verb} resource "${resource}" in API group "${a.group}" ${where}`
}
