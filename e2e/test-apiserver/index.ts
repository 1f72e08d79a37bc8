/**
 * TEST INFRASTRUCTURE: a kube-apiserver stand-in for Cairn's tests. See README.md.
 */
export { TestApiServer, type TestApiServerOptions } from './server.js'
export { ApiError, type Status } from './errors.js'
export { requestAttributes, type RequestAttributes } from './request-info.js'
