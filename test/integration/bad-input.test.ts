// Bad input against the real control plane: what the API server refuses says why, and what gets
// through (odd names and labels, hand edits of the Deployment) never costs an Echo its Deployment.
// The refusals operator.test.ts already checks (replicas out of range or of the wrong type, no
// replicas, an invalid name) are not repeated here.
import assert from 'node:assert/strict';
import { SLOT_LABEL, slotOf } from '../../src/runtime/sharding/buckets.ts';
import { describe, it } from 'node:test';
import { DEFAULT_IMAGE, type Echo } from '../../src/echo/api.ts';
import { ApiError, isInvalid, isNotFound } from '../../src/kube/errors.ts';
import { eventually } from '../support/kube.ts';
import { invalidEchoManifest } from '../support/echo.ts';
import { foreignDeployment } from '../support/fixtures.ts';
import { startOperator } from '../support/operator.ts';
import { useNamespace } from '../support/namespaces.ts';
import { namespaceApi, type Deployment } from '../support/namespace-api.ts';

interface Pod {
  metadata: { name: string; labels?: Record<string, string> };
}

describe('bad input', () => {
  const env = useNamespace('bad-input', { operator: true });
  const { admin, ns } = env;

  const { echoes, deployments, createEcho, getEcho, getDeployment, patch, readyEcho } =
    namespaceApi(admin, ns.name);
  const podsSelectedBy = async (matchLabels: Record<string, string>): Promise<Pod[]> =>
    (
      await admin.request<{ items: Pod[] }>({
        path: `/api/v1/namespaces/${ns.name}/pods`,
        query: {
          labelSelector: Object.entries(matchLabels)
            .map(([k, v]) => `${k}=${v}`)
            .join(','),
        },
      })
    ).items;
  /** The error a request fails with; a request that succeeds fails the test. */
  const refusal = async (request: Promise<unknown>): Promise<ApiError> => {
    const err = await request.then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApiError, `expected a refusal, got ${String(err)}`);
    return err;
  };
  const ownedBy = (d: Deployment, echo: Echo): boolean => {
    const owner = d.metadata.ownerReferences?.find((r) => r.controller === true);
    return owner?.kind === 'Echo' && owner.uid === echo.metadata.uid;
  };

  it('refuses an Echo with no spec at all, with the schema’s message', async () => {
    const err = await refusal(
      admin.request({
        method: 'POST',
        path: echoes(),
        body: invalidEchoManifest('no-spec'),
      }),
    );
    assert.ok(isInvalid(err), `expected 422 Invalid, got ${err.message}`);
    assert.match(err.message, /Echo\.example\.com "no-spec" is invalid: .*spec: Required value/);
  });

  it('refuses unknown fields when validation is strict, and prunes them otherwise', async () => {
    const body = invalidEchoManifest('unknown-field', { replicas: 1, foo: 'bar' });
    // kubectl asks for strict validation by default.
    const err = await refusal(
      admin.request({
        method: 'POST',
        path: echoes(),
        query: { fieldValidation: 'Strict' },
        body,
      }),
    );
    assert.equal(err.code, 400);
    assert.equal(err.reason, 'BadRequest');
    assert.match(err.message, /strict decoding error: unknown field "spec\.foo"/);
    assert.ok(isNotFound(await refusal(getEcho('unknown-field'))), 'nothing was stored');

    // Without it (the API's default), the field is dropped, not stored: the spec is the schema's.
    await admin.request({ method: 'POST', path: echoes(), body });
    assert.deepEqual((await getEcho('unknown-field')).spec, { replicas: 1, image: DEFAULT_IMAGE });
    await readyEcho('unknown-field', 1);
    assert.equal((await getDeployment('unknown-field')).spec.replicas, 1);
  });

  it('runs an Echo whose name is 253 characters, the most a Deployment name may have', async () => {
    // Dots split it into DNS labels of at most 63 characters, as an RFC 1123 subdomain needs.
    const name = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.');
    assert.equal(name.length, 253);
    await createEcho(name, 2);
    const echo = await readyEcho(name, 2);
    const d = await getDeployment(name);
    assert.ok(ownedBy(d, echo), 'the Deployment of the same name is the Echo’s');
    assert.equal(d.spec.replicas, 2);
    const instance = d.spec.selector.matchLabels['app.kubernetes.io/instance'] ?? '';
    assert.ok(instance.length <= 63, `label value ${instance} fits`);
    assert.equal((await podsSelectedBy(d.spec.selector.matchLabels)).length, 2);
  });

  it('keeps its selector whatever labels the Echo carries', async () => {
    const labels = {
      empty: '',
      long: 'v'.repeat(63),
      'example.org/team': 'blue',
      // Each tries to take the operator's labels: another Echo's pods, another manager.
      'app.kubernetes.io/name': 'not-echo',
      'app.kubernetes.io/instance': 'neighbour',
      'app.kubernetes.io/managed-by': 'someone-else',
    };
    await createEcho('neighbour', 1);
    await createEcho('labelled', 2, labels);
    await readyEcho('neighbour', 1);
    await readyEcho('labelled', 2);
    const d = await getDeployment('labelled');
    const own = { 'app.kubernetes.io/name': 'echo', 'app.kubernetes.io/instance': 'labelled' };
    assert.deepEqual(d.spec.selector.matchLabels, own);
    const uid = (await getEcho('labelled')).metadata.uid;
    assert.deepEqual(d.metadata.labels, {
      empty: '',
      long: 'v'.repeat(63),
      'example.org/team': 'blue',
      ...own,
      'app.kubernetes.io/managed-by': 'echo-operator',
      [SLOT_LABEL]: slotOf(uid),
    });
    // Each Deployment selects its own pods and only those: the labels moved no pod.
    const pods = await podsSelectedBy(d.spec.selector.matchLabels);
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      assert.deepEqual(Object.keys(pod.metadata.labels ?? {}).sort(), [
        'app.kubernetes.io/instance',
        'app.kubernetes.io/name',
        'pod-template-hash',
      ]);
    }
    const neighbour = await getDeployment('neighbour');
    assert.equal((await podsSelectedBy(neighbour.spec.selector.matchLabels)).length, 1);
    assert.equal(
      (await getEcho('labelled')).status?.selector,
      'app.kubernetes.io/name=echo,app.kubernetes.io/instance=labelled',
    );
  });

  it('restores its owner reference when someone removes it by hand', async () => {
    await createEcho('disowned', 1);
    const echo = await readyEcho('disowned', 1);
    const edited = await patch<Deployment>(`${deployments()}/disowned`, {
      metadata: { ownerReferences: null },
    });
    assert.equal(edited.metadata.ownerReferences, undefined, 'the edit took');
    const d = await eventually('the owner reference back', async () => {
      const current = await getDeployment('disowned');
      return ownedBy(current, echo) ? current : undefined;
    });
    assert.equal(d.metadata.uid, edited.metadata.uid, 'the same Deployment, not a new one');
    await readyEcho('disowned', 1);
  });

  it('is refused a selector edit, and re-creates an orphan labelled as its own with another', async () => {
    await createEcho('reselected', 2);
    const echo = await readyEcho('reselected', 2);
    const original = await getDeployment('reselected');
    const other = { app: 'other' };
    const err = await refusal(
      patch(`${deployments()}/reselected`, {
        spec: { selector: { matchLabels: other }, template: { metadata: { labels: other } } },
      }),
    );
    assert.ok(isInvalid(err), `expected 422 Invalid, got ${err.message}`);
    assert.match(err.message, /spec\.selector: Invalid value: .*field is immutable/);
    assert.deepEqual(
      (await getDeployment('reselected')).spec.selector,
      original.spec.selector,
      'selector untouched',
    );

    // The operator is stopped while the Deployment is replaced: running, it may recreate its own
    // on the delete event before the hand-made one is posted, which then gets 409 AlreadyExists.
    await env.operator.stop();
    let foreign: Deployment;
    try {
      await admin.request({ method: 'DELETE', path: `${deployments()}/reselected` });
      // Labelled as the operator's and controlled by nobody (as an older release might leave it):
      // adopted, then, its selector being immutable, deleted and created again.
      const hand = foreignDeployment('reselected', other) as { metadata: object };
      foreign = await admin.request<Deployment>({
        method: 'POST',
        path: deployments(),
        body: {
          ...hand,
          metadata: {
            ...hand.metadata,
            labels: { 'app.kubernetes.io/managed-by': 'echo-operator' },
          },
        },
      });
    } finally {
      env.operator = await startOperator([ns.name]);
    }
    const d = await eventually('the operator’s own Deployment back', async () => {
      const current = await getDeployment('reselected');
      return current.metadata.uid !== foreign.metadata.uid && ownedBy(current, echo)
        ? current
        : undefined;
    });
    assert.deepEqual(d.spec.selector, original.spec.selector);
    assert.equal(d.spec.replicas, 2);
    await readyEcho('reselected', 2);
    await eventually('a DeploymentRecreated Event', async () => {
      const events = await admin.request<{
        items: { reason: string; type: string; regarding: { name: string; uid: string } }[];
      }>({ path: `/apis/events.k8s.io/v1/namespaces/${ns.name}/events` });
      return events.items.some(
        (e) =>
          e.regarding.uid === echo.metadata.uid &&
          e.reason === 'DeploymentRecreated' &&
          e.type === 'Normal',
      )
        ? true
        : undefined;
    });
  });
});
