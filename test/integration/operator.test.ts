// The operator against the real control plane: echo-operator-rs's end-to-end scenarios, and the
// cases where it fell short (long names, label edits, foreign owners, zero steady-state writes).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'yaml';
import type { Echo } from '../../src/echo/api.ts';
import { isInvalid, isNotFound, type ApiError } from '../../src/kube/errors.ts';
import { eventually, kubectl } from '../support/kube.ts';
import { foreignDeployment, isReady } from '../support/fixtures.ts';
import { echoManifest, invalidEchoManifest } from '../support/echo.ts';
import { installCrd } from '../../hack/cluster/crd.ts';
import { startOperator } from '../support/operator.ts';
import { testNamespace, useNamespace } from '../support/namespaces.ts';
import { namespaceApi } from '../support/namespace-api.ts';

describe('echo operator', () => {
  const env = useNamespace('operator');
  const { admin, ns } = env;

  const { echoes, deployments, createEcho, getEcho, getDeployment, patch, readyEcho } =
    namespaceApi(admin, ns.name);
  const gone = async (path: string): Promise<true | undefined> => {
    try {
      await admin.request({ path });
      return undefined;
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
  };

  before(async () => {
    await installCrd(admin);
    env.operator = await startOperator([ns.name]);
  });

  it('creates a Deployment for a new Echo and reports it Ready', async () => {
    await createEcho('basic', 2, { team: 'a' });
    const echo = await readyEcho('basic', 2);
    const d = await getDeployment('basic');
    assert.equal(d.spec.replicas, 2);
    assert.equal(d.metadata.labels?.['app.kubernetes.io/managed-by'], 'echo-operator');
    assert.equal(d.metadata.labels.team, 'a');
    const owner = d.metadata.ownerReferences?.[0];
    assert.deepEqual(
      { kind: owner?.kind, name: owner?.name, uid: owner?.uid, controller: owner?.controller },
      { kind: 'Echo', name: 'basic', uid: echo.metadata.uid, controller: true },
    );
    assert.equal(
      echo.status?.selector,
      'app.kubernetes.io/name=echo,app.kubernetes.io/instance=basic',
    );
    assert.match(
      kubectl('explain', 'echo.spec.replicas'),
      /Number of echo-server pods to run, 0 to 1000/,
    );
    const table = kubectl('-n', ns.name, 'get', 'echo', 'basic');
    assert.match(table, /^NAME\s+READY\s+REPLICAS\s+READY REPLICAS\s+AGE\n/);
    assert.match(table, /\nbasic\s+True\s+2\s+2\s+\d+s\n/);
    const progressing = echo.status.conditions?.find((c) => c.type === 'Progressing');
    assert.equal(progressing?.status, 'False');
    assert.equal(progressing.reason, 'Complete');
  });

  it('recreates a Deployment deleted by hand', async () => {
    await createEcho('recreate', 1);
    const first = await eventually('the Deployment', () => getDeployment('recreate'));
    await admin.request({ method: 'DELETE', path: `${deployments()}/recreate` });
    const second = await eventually('a new Deployment', async () => {
      const d = await getDeployment('recreate').catch(() => undefined);
      return d && d.metadata.uid !== first.metadata.uid ? d : undefined;
    });
    assert.equal(second.spec.replicas, 1);
    await readyEcho('recreate', 1);
  });

  it('lets the garbage collector remove the Deployment of a deleted Echo', async () => {
    await createEcho('doomed', 1);
    await eventually('the Deployment', () => getDeployment('doomed'));
    await admin.request({ method: 'DELETE', path: `${echoes()}/doomed` });
    await eventually('the Deployment to be garbage-collected', () =>
      gone(`${deployments()}/doomed`),
    );
  });

  it('reverts a hand edit of the Deployment replicas', async () => {
    await createEcho('drift', 2);
    await readyEcho('drift', 2);
    await patch(`${deployments()}/drift`, { spec: { replicas: 5 } });
    await eventually('replicas reverted to 2', async () =>
      (await getDeployment('drift')).spec.replicas === 2 ? true : undefined,
    );
  });

  it('puts back a status edited by hand', async () => {
    await createEcho('status-edit', 2);
    await readyEcho('status-edit', 2);
    await patch(`${echoes()}/status-edit/status`, { status: { readyReplicas: 7 } });
    await eventually('readyReplicas put back to 2', async () =>
      (await getEcho('status-edit')).status?.readyReplicas === 2 ? true : undefined,
    );
  });

  it('follows a change of the Echo replicas, status included', async () => {
    await createEcho('scale', 1);
    await readyEcho('scale', 1);
    await patch(`${echoes()}/scale`, { spec: { replicas: 3 } });
    const echo = await readyEcho('scale', 3);
    assert.equal((await getDeployment('scale')).spec.replicas, 3);
    assert.equal(echo.status?.replicas, 3);
  });

  it('scales through the scale subresource, as kubectl scale does', async () => {
    await createEcho('kscale', 1);
    await readyEcho('kscale', 1);
    kubectl('-n', ns.name, 'scale', 'echo/kscale', '--replicas=4');
    await readyEcho('kscale', 4);
    const scale = await admin.request<{ spec: { replicas: number }; status: { selector: string } }>(
      {
        path: `${echoes()}/kscale/scale`,
      },
    );
    assert.equal(scale.spec.replicas, 4);
    assert.equal(
      scale.status.selector,
      'app.kubernetes.io/name=echo,app.kubernetes.io/instance=kscale',
    );
  });

  /** The operator's Events about the Echo `name`, by reason. */
  const eventsAbout = async (name: string): Promise<string[]> => {
    const events = await admin.request<{
      items: { reason: string; type: string; regarding: { name: string; kind: string } }[];
    }>({ path: `/apis/events.k8s.io/v1/namespaces/${ns.name}/events` });
    return events.items
      .filter((e) => e.regarding.kind === 'Echo' && e.regarding.name === name)
      .map((e) => `${e.type} ${e.reason}`);
  };
  const readyReason = async (name: string): Promise<string | undefined> =>
    (await getEcho(name)).status?.conditions?.find((c) => c.type === 'Ready')?.reason;

  // The outside review's reproduction: `kubectl create deployment web --image=nginx`, then an Echo
  // named web. The Deployment is not labelled as the operator's, so its cache never holds it.
  for (const [title, labels] of [
    ['with another selector', { app: 'nginx' }],
    [
      'whose selector happens to be the Echo’s',
      { 'app.kubernetes.io/name': 'echo', 'app.kubernetes.io/instance': 'nginx-same' },
    ],
  ] as const) {
    const name = Object.keys(labels).length === 1 ? 'nginx-other' : 'nginx-same';
    it(`never deletes or takes over a user's Deployment ${title}; takes the name once it goes`, async () => {
      interface Written {
        metadata: { uid: string; generation: number; managedFields: { manager: string }[] };
      }
      const theirs = await admin.request<Written>({
        method: 'POST',
        path: deployments(),
        body: foreignDeployment(name, labels),
      });
      await createEcho(name, 2);
      await eventually('the Echo to say the name is taken', async () =>
        (await readyReason(name)) === 'DeploymentNameTaken' ? true : undefined,
      );
      const ready = (await getEcho(name)).status?.conditions?.find((c) => c.type === 'Ready');
      assert.equal(ready?.status, 'False');
      assert.match(ready.message, new RegExp(`Deployment ${name} exists and is not this Echo's`));
      // Long enough for a retry or two (5 s, then 10 s): still untouched, still told once.
      await sleep(6000);
      const d = await admin.request<Written>({ path: `${deployments()}/${name}` });
      assert.equal(d.metadata.uid, theirs.metadata.uid, 'not deleted');
      assert.equal(d.metadata.generation, theirs.metadata.generation, 'its spec not changed');
      assert.deepEqual(
        d.metadata.managedFields.map((f) => f.manager).filter((m) => m === 'echoes.example.com'),
        [],
        'no field written by the operator',
      );
      assert.deepEqual(await eventsAbout(name), ['Warning DeploymentNameTaken']);

      await admin.request({ method: 'DELETE', path: `${deployments()}/${name}` });
      const echo = await readyEcho(name, 2);
      const ours = await getDeployment(name);
      assert.notEqual(ours.metadata.uid, theirs.metadata.uid);
      assert.equal(ours.metadata.ownerReferences?.[0]?.uid, echo.metadata.uid);
      assert.deepEqual(await eventsAbout(name), [
        'Warning DeploymentNameTaken',
        'Normal Recovered',
      ]);
    });
  }

  it('adopts the Deployment an Echo deleted with --cascade=orphan left behind', async () => {
    await createEcho('orphaned', 1);
    await readyEcho('orphaned', 1);
    const left = await getDeployment('orphaned');
    await admin.request({
      method: 'DELETE',
      path: `${echoes()}/orphaned`,
      body: { propagationPolicy: 'Orphan' },
    });
    await eventually('the garbage collector to orphan the Deployment', async () => {
      const d = await getDeployment('orphaned');
      return (d.metadata.ownerReferences ?? []).length === 0 ? true : undefined;
    });
    await eventually('the Echo to be gone', () => gone(`${echoes()}/orphaned`));
    await createEcho('orphaned', 1);
    const echo = await readyEcho('orphaned', 1);
    const adopted = await getDeployment('orphaned');
    assert.equal(adopted.metadata.uid, left.metadata.uid, 'the same Deployment, adopted');
    assert.equal(adopted.metadata.ownerReferences?.[0]?.uid, echo.metadata.uid);
  });

  it('handles names longer than a label value allows', async () => {
    const name = `long-${'x'.repeat(200)}`;
    await createEcho(name, 1);
    const echo = await readyEcho(name, 1);
    const d = await getDeployment(name);
    const instance = d.spec.selector.matchLabels['app.kubernetes.io/instance'] ?? '';
    assert.ok(instance.length <= 63, `label value ${instance} fits`);
    assert.equal(
      echo.status?.selector,
      `app.kubernetes.io/name=echo,app.kubernetes.io/instance=${instance}`,
    );
  });

  it('updates Deployment labels without recreating it when the Echo labels change', async () => {
    await createEcho('labels', 1, { tier: 'one' });
    await readyEcho('labels', 1);
    const before = await getDeployment('labels');
    await patch(`${echoes()}/labels`, { metadata: { labels: { tier: null, color: 'blue' } } });
    const after = await eventually('the new labels', async () => {
      const d = await getDeployment('labels');
      return d.metadata.labels?.color === 'blue' && d.metadata.labels.tier === undefined
        ? d
        : undefined;
    });
    assert.equal(after.metadata.uid, before.metadata.uid, 'same Deployment, not recreated');
  });

  it('leaves alone a Deployment controlled by someone else, and says so', async () => {
    const owner = await admin.request<{ metadata: { uid: string } }>({
      method: 'POST',
      path: `/api/v1/namespaces/${ns.name}/configmaps`,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'someone-else' } },
    });
    const controller = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      name: 'someone-else',
      uid: owner.metadata.uid,
      controller: true,
    };
    await admin.request({
      method: 'POST',
      path: deployments(),
      body: foreignDeployment('taken', { theirs: 'yes' }, [controller]),
    });
    await createEcho('taken', 3);
    const echo = await eventually('the Echo to report the foreign owner', async () => {
      const e = await getEcho('taken');
      const ready = e.status?.conditions?.find((c) => c.type === 'Ready');
      return ready?.reason === 'DeploymentOwnedByAnother' ? e : undefined;
    });
    assert.equal(echo.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    const d = await getDeployment('taken');
    assert.equal(d.spec.replicas, 1, 'untouched');
    assert.deepEqual(d.spec.selector.matchLabels, { theirs: 'yes' });
    const events = await admin.request<{
      items: { reason: string; regarding: { name: string } }[];
    }>({
      path: `/apis/events.k8s.io/v1/namespaces/${ns.name}/events`,
    });
    assert.ok(
      events.items.some(
        (e) => e.regarding.name === 'taken' && e.reason === 'DeploymentOwnedByAnother',
      ),
    );
  });

  it('records an Event a user sees in kubectl describe when it puts back a hand edit', async () => {
    await createEcho('described', 1);
    await readyEcho('described', 1);
    await patch(`${deployments()}/described`, { spec: { replicas: 4 } });
    const out = await eventually('an Event in kubectl describe', () => {
      const text = kubectl('-n', ns.name, 'describe', 'echo', 'described');
      return Promise.resolve(text.includes('DeploymentReverted') ? text : undefined);
    });
    assert.match(out, /Normal\s+DeploymentReverted\s+.*spec\.replicas was changed by someone else/);
  });

  it('makes zero API calls in steady state, across a forced resync', async (t) => {
    // A namespace and an operator of its own: no other test's Echo is still settling here.
    const quiet = await testNamespace(t, admin, 'steady');
    // Reconciles that ran to their end, and workers busy now, as the controller reports them.
    let reconciled = 0;
    let busyWorkers = 0;
    const own = await startOperator([quiet.name], {
      controllerObserver: {
        reconciled: () => {
          reconciled++;
        },
        activeWorkers: (count) => {
          busyWorkers = count;
        },
      },
    });
    try {
      const names = ['s1', 's2', 's3', 's4', 's5'];
      for (const name of names) {
        await admin.request({
          method: 'POST',
          path: `/apis/example.com/v1/namespaces/${quiet.name}/echoes`,
          body: echoManifest({ name, replicas: 2 }),
        });
      }
      for (const name of names) {
        await eventually(`${name} Ready`, async () =>
          isReady(
            await admin.request<Echo>({
              path: `/apis/example.com/v1/namespaces/${quiet.name}/echoes/${name}`,
            }),
            2,
          )
            ? true
            : undefined,
        );
      }
      // Settled: the operator made no request for two seconds (late status updates have landed).
      // A measuring window, not the condition under test: were it too short, a late write would
      // fail the assertion below, never let it pass.
      await eventually('the operator to go quiet', async () => {
        const total = own.counts.total();
        await sleep(2000);
        return own.counts.total() === total ? true : undefined;
      });
      const before = own.counts.all();
      const reconciledBefore = reconciled;
      own.operator.resync();
      // Every Echo the resync queued reconciled to its end, no worker busy, nothing left queued,
      // and the Events those reconciles recorded sent: whatever the resync costs is counted now.
      await eventually('the resync to be reconciled', () =>
        Promise.resolve(
          reconciled - reconciledBefore >= names.length &&
            busyWorkers === 0 &&
            own.operator.queue.length === 0
            ? true
            : undefined,
        ),
      );
      await own.operator.recorder.flush();
      const made = own.counts
        .all()
        .map((c) => ({
          ...c,
          count:
            c.count -
            (before.find((b) => b.verb === c.verb && b.resource === c.resource && b.code === c.code)
              ?.count ?? 0),
        }))
        .filter((c) => c.count > 0);
      // Not even a read: the reconciler works from the caches, so a resync costs the API server nothing.
      assert.deepEqual(made, [], 'no API calls in steady state');
      assert.ok(own.counts.writes() >= names.length * 2, 'the operator did write while converging');
    } finally {
      await own.stop();
    }
  });

  it('is refused invalid Echoes by the API server, with a clear message', async () => {
    const refuse = async (body: unknown): Promise<ApiError> => {
      const err = await admin.request({ method: 'POST', path: echoes(), body }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(isInvalid(err), `expected 422 Invalid, got ${String(err)}`);
      return err;
    };
    const echo = invalidEchoManifest;
    assert.match(
      (await refuse(echo('neg', { replicas: -1 }))).message,
      /spec\.replicas.*should be greater than or equal to 0/,
    );
    assert.match(
      (await refuse(echo('big', { replicas: 1001 }))).message,
      /spec\.replicas.*less than or equal to 1000/,
    );
    assert.match((await refuse(echo('none', {}))).message, /spec\.replicas: Required value/);
    assert.match(
      (await refuse(echo('text', { replicas: 'three' }))).message,
      /spec\.replicas.*integer/,
    );
    assert.match((await refuse(echo('Upper.Case', { replicas: 1 }))).message, /RFC 1123 subdomain/);
    const invalidExample = parse(
      readFileSync(new URL('../../examples/echo-invalid.yaml', import.meta.url), 'utf8'),
    ) as unknown;
    assert.match((await refuse(invalidExample)).message, /spec\.replicas/);
  });
});
