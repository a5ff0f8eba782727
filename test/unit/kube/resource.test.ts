// The typed resource handle: every path, method, content type and query the operator sends is
// built here, so each request is checked against a fake requester.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestOptions } from '../../../src/kube/client.ts';
import { ApiError } from '../../../src/kube/errors.ts';
import type { KubeObject } from '../../../src/kube/object.ts';
import {
  CONFIGMAPS,
  DEPLOYMENTS,
  EVENTS,
  LEASES,
  SUBJECT_ACCESS_REVIEWS,
  TOKEN_REVIEWS,
  collectionPath,
  groupVersionPath,
  resource,
  type Requester,
} from '../../../src/kube/resource.ts';
import { APPLY_PATCH } from '../../../src/kube/request-info.ts';

const status = (code: number) =>
  new ApiError(code, { kind: 'Status', code, message: `code ${String(code)}` }, 'GET', '/x');

/** A requester that records each request and answers with `answer` (an object, or an error). */
function fake(answer: () => unknown = () => ({ metadata: { name: 'web' } })) {
  const sent: RequestOptions[] = [];
  const client: Requester = {
    request: <T>(opts: RequestOptions): Promise<T> => {
      sent.push(opts);
      const a = answer();
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(a as T);
    },
  };
  return { client, sent };
}

const WEB = { metadata: { name: 'web', namespace: 'team' } } satisfies KubeObject;
const DEPLOYMENT = '/apis/apps/v1/namespaces/team/deployments/web';

describe('collectionPath', () => {
  it('builds group and core paths, namespaced or cluster-wide', () => {
    const deployments = { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments' };
    assert.equal(collectionPath(deployments, 'team'), '/apis/apps/v1/namespaces/team/deployments');
    assert.equal(collectionPath(deployments, undefined), '/apis/apps/v1/deployments');
    const pods = { apiVersion: 'v1', kind: 'Pod', plural: 'pods' };
    assert.equal(collectionPath(pods, 'team'), '/api/v1/namespaces/team/pods');
    assert.equal(collectionPath(pods, undefined), '/api/v1/pods');
  });

  it("serves the runtime's own types from their group versions", () => {
    assert.equal(groupVersionPath(CONFIGMAPS), '/api/v1');
    assert.equal(groupVersionPath(LEASES), '/apis/coordination.k8s.io/v1');
    assert.equal(collectionPath(EVENTS, 'team'), '/apis/events.k8s.io/v1/namespaces/team/events');
  });

  it('never puts a namespace in the path of a cluster-scoped type, such as the reviews', () => {
    assert.equal(
      collectionPath(TOKEN_REVIEWS, 'team'),
      '/apis/authentication.k8s.io/v1/tokenreviews',
    );
    assert.equal(
      resource(fake().client, SUBJECT_ACCESS_REVIEWS).namespace('team').path(),
      '/apis/authorization.k8s.io/v1/subjectaccessreviews',
    );
  });
});

describe('reviews', () => {
  it('are created with a POST to the cluster-wide collection, and answer in status', async () => {
    const { client, sent } = fake(() => ({
      metadata: {},
      status: { authenticated: true, user: { username: 'system:serviceaccount:mon:prom' } },
    }));
    const review = await resource(client, TOKEN_REVIEWS).create({
      metadata: { name: '' },
      spec: { token: 't' },
    });
    assert.equal(review.status?.user?.username, 'system:serviceaccount:mon:prom');
    const [created] = sent;
    assert.ok(created);
    assert.equal(created.method, 'POST');
    assert.equal(created.path, '/apis/authentication.k8s.io/v1/tokenreviews');
  });
});

describe('Resource paths', () => {
  it('names the collection, an object and its subresource, in a namespace or across them', () => {
    const all = resource(fake().client, DEPLOYMENTS);
    assert.equal(all.path(), '/apis/apps/v1/deployments');
    const team = all.namespace('team');
    assert.equal(team.namespaceName, 'team');
    assert.equal(all.namespaceName, undefined, 'namespace() returns a new handle');
    assert.equal(team.path(), '/apis/apps/v1/namespaces/team/deployments');
    assert.equal(team.path('web'), DEPLOYMENT);
    assert.equal(team.path('web', 'status'), `${DEPLOYMENT}/status`);
  });
});

describe('Resource requests', () => {
  it('gets an object by GET, passing the signal on', async () => {
    const { client, sent } = fake();
    const signal = new AbortController().signal;
    const got = await resource(client, DEPLOYMENTS).namespace('team').get('web', { signal });
    assert.deepEqual(got, { metadata: { name: 'web' } });
    assert.equal(sent[0]?.method, undefined, 'GET, the default');
    assert.deepEqual(sent, [{ path: DEPLOYMENT, signal }]);
  });

  it('finds undefined for an object that is not there (404), and throws other errors', async () => {
    const notFound = fake(() => status(404));
    assert.equal(
      await resource(notFound.client, DEPLOYMENTS).namespace('team').find('web'),
      undefined,
    );
    assert.deepEqual(notFound.sent, [{ path: DEPLOYMENT }]);
    const failing = fake(() => status(500));
    await assert.rejects(
      resource(failing.client, DEPLOYMENTS).namespace('team').find('web'),
      (err: unknown) => err instanceof ApiError && err.code === 500,
    );
    const found = fake();
    assert.deepEqual(await resource(found.client, DEPLOYMENTS).namespace('team').find('web'), {
      metadata: { name: 'web' },
    });
    await assert.rejects(
      resource(notFound.client, DEPLOYMENTS).namespace('team').get('web'),
      (err: unknown) => err instanceof ApiError && err.code === 404,
      'get: a 404 is an error',
    );
  });

  it('creates by POST to the collection and replaces by PUT to the object', async () => {
    const { client, sent } = fake();
    const team = resource(client, CONFIGMAPS).namespace('team');
    await team.create(WEB);
    await team.replace(WEB);
    assert.deepEqual(sent, [
      { method: 'POST', path: '/api/v1/namespaces/team/configmaps', body: WEB },
      { method: 'PUT', path: '/api/v1/namespaces/team/configmaps/web', body: WEB },
    ]);
  });

  it('applies server-side, forced unless told not to, as the field manager given', async () => {
    const { client, sent } = fake();
    const signal = new AbortController().signal;
    const team = resource(client, DEPLOYMENTS).namespace('team');
    await team.apply(WEB, { fieldManager: 'me' });
    await team.apply(WEB, { fieldManager: 'me', force: false, signal });
    assert.deepEqual(sent, [
      {
        method: 'PATCH',
        path: DEPLOYMENT,
        query: { fieldManager: 'me', force: true },
        body: WEB,
        contentType: APPLY_PATCH,
      },
      {
        method: 'PATCH',
        path: DEPLOYMENT,
        query: { fieldManager: 'me' },
        body: WEB,
        contentType: APPLY_PATCH,
        signal,
      },
    ]);
    assert.equal(APPLY_PATCH, 'application/apply-patch+yaml');
  });

  it('applies the status subresource at its own path', async () => {
    const { client, sent } = fake();
    await resource(client, DEPLOYMENTS).namespace('team').applyStatus(WEB, { fieldManager: 'me' });
    assert.deepEqual(sent, [
      {
        method: 'PATCH',
        path: `${DEPLOYMENT}/status`,
        query: { fieldManager: 'me', force: true },
        body: WEB,
        contentType: APPLY_PATCH,
      },
    ]);
  });

  it('patches with the content type of each patch type', async () => {
    const { client, sent } = fake();
    const team = resource(client, DEPLOYMENTS).namespace('team');
    const body = { metadata: { labels: { a: 'b' } } };
    await team.patch('web', 'strategic', body);
    await team.patch('web', 'merge', body);
    await team.patch('web', 'json', [{ op: 'remove', path: '/metadata/labels/a' }]);
    assert.deepEqual(
      sent.map((r) => [r.method, r.path, r.contentType]),
      [
        ['PATCH', DEPLOYMENT, 'application/strategic-merge-patch+json'],
        ['PATCH', DEPLOYMENT, 'application/merge-patch+json'],
        ['PATCH', DEPLOYMENT, 'application/json-patch+json'],
      ],
    );
    const [strategic] = sent;
    assert.ok(strategic);
    assert.equal(strategic.body, body);
    assert.equal(strategic.query, undefined, 'no query');
  });

  it('deletes with the uid as a precondition and the propagation policy in the body', async () => {
    const { client, sent } = fake();
    const signal = new AbortController().signal;
    const team = resource(client, DEPLOYMENTS).namespace('team');
    assert.equal(
      await team.delete('web', { uid: 'd-1', propagationPolicy: 'Background', signal }),
      true,
    );
    await team.delete('web');
    assert.deepEqual(sent, [
      {
        method: 'DELETE',
        path: DEPLOYMENT,
        body: { propagationPolicy: 'Background', preconditions: { uid: 'd-1' } },
        signal,
      },
      { method: 'DELETE', path: DEPLOYMENT, body: {} },
    ]);
  });

  it('deletes what is gone already as false, and throws other errors', async () => {
    const gone = fake(() => status(404));
    assert.equal(await resource(gone.client, DEPLOYMENTS).namespace('team').delete('web'), false);
    const conflict = fake(() => status(409));
    await assert.rejects(
      resource(conflict.client, DEPLOYMENTS).namespace('team').delete('web', { uid: 'old' }),
      (err: unknown) => err instanceof ApiError && err.code === 409,
      'a uid precondition that fails is an error',
    );
  });

  it('reads cluster-wide without a namespace', async () => {
    const { client, sent } = fake();
    await resource(client, { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces' }).get(
      'team',
    );
    assert.deepEqual(sent, [{ path: '/api/v1/namespaces/team' }]);
  });
});
