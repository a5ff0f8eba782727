import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestCounts } from '../../../src/kube/request-counts.ts';
import {
  APPLY_PATCH,
  describeRequest,
  isReview,
  isWriteVerb,
} from '../../../src/kube/request-info.ts';

describe('describeRequest', () => {
  const cases: [
    string,
    string,
    Record<string, string>,
    string | undefined,
    ReturnType<typeof describeRequest>,
  ][] = [
    [
      'GET',
      '/apis/apps/v1/namespaces/ns1/deployments/web',
      {},
      undefined,
      {
        verb: 'get',
        resource: 'deployments.apps',
        pathTemplate: '/apis/apps/v1/namespaces/{namespace}/deployments/{name}',
      },
    ],
    [
      'GET',
      '/apis/apps/v1/deployments',
      { labelSelector: 'a=b' },
      undefined,
      { verb: 'list', resource: 'deployments.apps', pathTemplate: '/apis/apps/v1/deployments' },
    ],
    [
      'GET',
      '/apis/example.com/v1/echoes',
      { watch: 'true' },
      undefined,
      {
        verb: 'watch',
        resource: 'echoes.example.com',
        pathTemplate: '/apis/example.com/v1/echoes',
      },
    ],
    [
      'PATCH',
      '/apis/example.com/v1/namespaces/a/echoes/x/status',
      {},
      APPLY_PATCH,
      {
        verb: 'apply',
        resource: 'echoes.example.com/status',
        pathTemplate: '/apis/example.com/v1/namespaces/{namespace}/echoes/{name}/status',
      },
    ],
    [
      'PATCH',
      '/api/v1/namespaces/a/pods/p',
      {},
      'application/merge-patch+json',
      {
        verb: 'patch',
        resource: 'pods',
        pathTemplate: '/api/v1/namespaces/{namespace}/pods/{name}',
      },
    ],
    [
      'POST',
      '/api/v1/namespaces/a/serviceaccounts/sa/token',
      {},
      'application/json',
      {
        verb: 'create',
        resource: 'serviceaccounts/token',
        pathTemplate: '/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token',
      },
    ],
    [
      'DELETE',
      '/api/v1/namespaces/gone',
      {},
      undefined,
      { verb: 'delete', resource: 'namespaces', pathTemplate: '/api/v1/namespaces/{name}' },
    ],
    [
      'DELETE',
      '/api/v1/namespaces/a/configmaps',
      {},
      undefined,
      {
        verb: 'deletecollection',
        resource: 'configmaps',
        pathTemplate: '/api/v1/namespaces/{namespace}/configmaps',
      },
    ],
    [
      'PUT',
      '/apis/coordination.k8s.io/v1/namespaces/a/leases/l',
      {},
      'application/json',
      {
        verb: 'update',
        resource: 'leases.coordination.k8s.io',
        pathTemplate: '/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}',
      },
    ],
    ['GET', '/readyz', {}, undefined, { verb: 'GET', resource: '', pathTemplate: '/readyz' }],
    [
      'GET',
      '/apis/example.com/v1',
      {},
      undefined,
      { verb: 'GET', resource: '', pathTemplate: '/apis/example.com/v1' },
    ],
  ];
  for (const [method, path, query, contentType, expected] of cases) {
    it(`${method} ${path}`, () => {
      assert.deepEqual(describeRequest(method, path, query, contentType), expected);
    });
  }

  it('keeps object names out of the template', () => {
    const info = describeRequest('GET', '/api/v1/namespaces/secret-team/configmaps/customer-42');
    assert.doesNotMatch(info.pathTemplate, /secret-team|customer-42/);
  });
});

describe('isWriteVerb', () => {
  it('counts every verb that changes state, and no read', () => {
    assert.deepEqual(
      [
        'get',
        'list',
        'watch',
        'create',
        'update',
        'patch',
        'apply',
        'delete',
        'deletecollection',
      ].filter(isWriteVerb),
      ['create', 'update', 'patch', 'apply', 'delete', 'deletecollection'],
    );
  });
});

describe('reviews', () => {
  it('are creates of authentication and authorization reviews, and nothing else', () => {
    const resourceOf = (path: string): string => describeRequest('POST', path).resource;
    assert.equal(
      resourceOf('/apis/authentication.k8s.io/v1/tokenreviews'),
      'tokenreviews.authentication.k8s.io',
    );
    assert.deepEqual(
      [
        '/apis/authentication.k8s.io/v1/tokenreviews',
        '/apis/authorization.k8s.io/v1/subjectaccessreviews',
        '/apis/authorization.k8s.io/v1/namespaces/team/localsubjectaccessreviews',
        '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
        '/apis/apps/v1/namespaces/team/deployments',
        '/apis/example.com/v1/namespaces/team/reviews',
      ].map((path) => isReview(resourceOf(path))),
      [true, true, true, true, false, false],
    );
  });

  it('are counted among requests, not writes', () => {
    const counts = new RequestCounts();
    const event = (method: string, path: string) => ({
      ...describeRequest(method, path),
      method,
      code: 201,
      durationSeconds: 0.001,
    });
    counts.record(event('POST', '/apis/authentication.k8s.io/v1/tokenreviews'));
    counts.record(event('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews'));
    assert.equal(counts.writes(), 0);
    assert.equal(counts.total(), 2);
    counts.record(event('POST', '/apis/events.k8s.io/v1/namespaces/team/events'));
    assert.equal(counts.writes(), 1);
  });
});
