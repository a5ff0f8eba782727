import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ApiError,
  isConflict,
  isGone,
  isNamespaceTerminating,
  isInvalid,
  isNotFound,
  isTooManyRequests,
  parseStatus,
} from '../../../src/kube/errors.ts';

describe('ApiError', () => {
  it('takes the reason and causes from the server Status', () => {
    const status = parseStatus(
      JSON.stringify({
        kind: 'Status',
        status: 'Failure',
        reason: 'Invalid',
        code: 422,
        message: 'Deployment.apps "x" is invalid',
        details: { causes: [{ field: 'spec.selector', message: 'field is immutable' }] },
      }),
      422,
    );
    const err = new ApiError(
      422,
      status,
      'apply',
      '/apis/apps/v1/namespaces/{namespace}/deployments/{name}',
    );
    assert.ok(isInvalid(err));
    assert.equal(err.causes[0]?.field, 'spec.selector');
    assert.match(err.message, /^apply \/apis\/apps.*422 Invalid: Deployment/);
  });

  it('falls back on the HTTP code when the body is not a Status', () => {
    const err = new ApiError(409, parseStatus('<html>conflict</html>', 409), 'update', '/x');
    assert.ok(isConflict(err));
    assert.equal(err.status.message, '<html>conflict</html>');
    assert.ok(isNotFound(new ApiError(404, parseStatus('', 404), 'get', '/x')));
    assert.ok(isTooManyRequests(new ApiError(429, parseStatus('slow down', 429), 'list', '/x')));
  });

  it('tells a namespace being deleted from other refusals', () => {
    const terminating = parseStatus(
      JSON.stringify({
        kind: 'Status',
        status: 'Failure',
        reason: 'Forbidden',
        code: 403,
        message:
          'deployments.apps "a" is forbidden: unable to create new content in namespace ns because it is being terminated',
        details: {
          name: 'a',
          group: 'apps',
          kind: 'deployments',
          causes: [
            {
              reason: 'NamespaceTerminating',
              message: 'namespace ns is being terminated',
              field: 'metadata.namespace',
            },
          ],
        },
      }),
      403,
    );
    assert.ok(isNamespaceTerminating(new ApiError(403, terminating, 'apply', '/x')));
    const rbac = parseStatus(
      JSON.stringify({ kind: 'Status', reason: 'Forbidden', code: 403 }),
      403,
    );
    assert.ok(!isNamespaceTerminating(new ApiError(403, rbac, 'apply', '/x')));
  });

  it('treats 410 and the Expired reason as Gone', () => {
    assert.ok(isGone(new ApiError(410, { reason: 'Gone' }, 'watch', '/x')));
    assert.ok(isGone(new ApiError(500, { reason: 'Expired' }, 'list', '/x')));
    assert.ok(!isGone(new Error('plain')));
  });
});
