// The one table from Kubernetes API failures to Cairn's typed errors.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { ApiException } from '@kubernetes/client-node'
import { KubernetesApiError, mapApiError } from './errors.js'

const target = { resource: 'Volume' as const, name: 'v1' }

function apiException(code: number, reason: string, causes?: { field: string; reason: string; message: string }[]): ApiException<string> {
  const body = JSON.stringify({ kind: 'Status', status: 'Failure', code, reason, message: `server says ${reason}`, details: causes ? { causes } : {} })
  return new ApiException(code, `HTTP-Code: ${code}`, body, {})
}

describe('mapApiError', () => {
  const table: [string, unknown, string, string][] = [
    ['404 NotFound', apiException(404, 'NotFound'), 'NotFoundError', 'not-found'],
    ['409 AlreadyExists', apiException(409, 'AlreadyExists'), 'AlreadyExistsError', 'already-exists'],
    ['409 Conflict', apiException(409, 'Conflict'), 'ConflictError', 'aborted'],
    ['410 Expired', apiException(410, 'Expired'), 'StaleContinueTokenError', 'aborted'],
    ['400 BadRequest', apiException(400, 'BadRequest'), 'InvalidArgumentError', 'invalid-argument'],
    ['422 Invalid', apiException(422, 'Invalid', [{ field: 'spec.sizeBytes', reason: 'FieldValueInvalid', message: 'too small' }]), 'InvalidArgumentError', 'invalid-argument'],
    ['401 Unauthorized', apiException(401, 'Unauthorized'), 'KubernetesPermissionDeniedError', 'permission-denied'],
    ['403 Forbidden', apiException(403, 'Forbidden'), 'KubernetesPermissionDeniedError', 'permission-denied'],
    ['429 TooManyRequests', apiException(429, 'TooManyRequests'), 'ResourceExhaustedError', 'resource-exhausted'],
    ['500 InternalError', apiException(500, 'InternalError'), 'KubernetesUnavailableError', 'unavailable'],
    ['503 ServiceUnavailable', apiException(503, 'ServiceUnavailable'), 'KubernetesUnavailableError', 'unavailable'],
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'KubernetesUnavailableError', 'unavailable'],
    ['a body that is not JSON', new ApiException(502, 'HTTP-Code: 502', '<html>bad gateway</html>', {}), 'KubernetesUnavailableError', 'unavailable'],
  ]
  for (const [why, err, name, kind] of table) {
    it(`maps ${why} to ${name}`, () => {
      const mapped = mapApiError(err, target)
      assert.equal(mapped.name, name)
      assert.equal(mapped.kind, kind)
      assert.ok(mapped.cause instanceof KubernetesApiError, 'the server answer is kept as the cause')
    })
  }

  it("keeps a 422's field causes and message, and names the object of a 404", () => {
    const invalid = mapApiError(apiException(422, 'Invalid', [{ field: 'spec.x', reason: 'FieldValueInvalid', message: 'bad' }]), target)
    const cause = invalid.cause as KubernetesApiError
    assert.deepEqual(cause.causes, [{ field: 'spec.x', reason: 'FieldValueInvalid', message: 'bad' }])
    assert.equal(invalid.message, cause.message)
    const missing = mapApiError(apiException(404, 'NotFound'), target) as unknown as { resource: string; resourceName: string }
    assert.deepEqual([missing.resource, missing.resourceName], ['Volume', 'v1'])
  })
})
