// The Echo's conditions where its Deployment's rollout goes through or not (docs/conditions.md):
// an image change; pods a ResourceQuota or PodSecurity admission refuses; a rollout past its
// progress deadline. Each failure is named in Ready with the Deployment's own reason and message,
// told by one Warning Event, and cleared when its cause goes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Condition, Echo } from '../../src/echo/api.ts';
import { eventually, kubectl, type TestNamespace } from '../support/kube.ts';
import { namespaceApi } from '../support/namespace-api.ts';
import { useNamespaces } from '../support/namespaces.ts';

type Namespace = TestNamespace;

const PROGRESS_HOLD_MS = 1000;

const condition = (echo: Echo, type: string): Condition | undefined =>
  echo.status?.conditions?.find((c) => c.type === type);

describe('Echo conditions through rollouts and failures', () => {
  const {
    admin,
    namespaces: [plain, quota, replicaSetQuota, restricted],
  } = useNamespaces(
    [
      'conditions',
      'quota',
      'rs-quota',
      {
        prefix: 'restricted',
        labels: {
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/enforce-version': 'latest',
        },
      },
    ],
    // A short hold of a rollout's progress: the slow rollout below has it written within a second.
    { operator: { progressStatusDelayMs: PROGRESS_HOLD_MS } },
  );

  const inPlain = namespaceApi(admin, plain.name);
  const inQuota = namespaceApi(admin, quota.name);
  const inReplicaSetQuota = namespaceApi(admin, replicaSetQuota.name);
  const inRestricted = namespaceApi(admin, restricted.name);

  /** Waits until the Echo's Ready condition has `reason`, and returns the Echo. */
  const readyReason = (inNs: typeof inPlain, name: string, reason: string): Promise<Echo> =>
    eventually(`Echo ${name} Ready with reason ${reason}`, async () => {
      const echo = await inNs.getEcho(name);
      return condition(echo, 'Ready')?.reason === reason ? echo : undefined;
    });

  /** The Events about Echo `name`, as `type reason`, sorted. */
  const eventsAbout = async (ns: Namespace, name: string): Promise<string[]> => {
    const list = await admin.request<{
      items: { type: string; reason: string; regarding: { kind: string; name: string } }[];
    }>({ path: `/apis/events.k8s.io/v1/namespaces/${ns.name}/events` });
    return list.items
      .filter((e) => e.regarding.kind === 'Echo' && e.regarding.name === name)
      .map((e) => `${e.type} ${e.reason}`)
      .sort();
  };
  /** Waits until the Events about `name` are `expected`, exactly. */
  const eventsAre = (ns: Namespace, name: string, expected: string[]): Promise<true> =>
    eventually(`Events about ${name}: ${expected.join(', ')}`, async () => {
      const seen = await eventsAbout(ns, name);
      return JSON.stringify(seen) === JSON.stringify([...expected].sort()) ? true : undefined;
    });

  /** A strategic merge patch of Deployment `name`, by another field manager. */
  const patchDeployment = (ns: Namespace, name: string, manager: string, body: object): void => {
    kubectl(
      ...['-n', ns.name, 'patch', 'deployment', name, '--type=strategic'],
      `--field-manager=${manager}`,
      '-p',
      JSON.stringify(body),
    );
  };

  it('rolls the Deployment on an image change, Ready for the new generation only once its pods are', async () => {
    await inPlain.createEcho('image', 2);
    const ready = await inPlain.readyEcho('image', 2);
    const image = 'registry.example/echo:2';
    const patched = await inPlain.patch<Echo>(`${inPlain.echoes()}/image`, { spec: { image } });
    const generation = patched.metadata.generation;
    // Every version of the Echo from before the change: a short Progressing cannot be missed.
    const versions: Echo[] = [];
    for await (const event of admin.watch<Echo>({
      path: inPlain.echoes(),
      query: {
        fieldSelector: 'metadata.name=image',
        resourceVersion: ready.metadata.resourceVersion,
      },
      signal: AbortSignal.timeout(60_000),
      idleTimeoutMs: 60_000,
    })) {
      if (event.type !== 'MODIFIED') continue;
      const echo = event.object;
      versions.push(echo);
      const done =
        echo.status?.observedGeneration === generation &&
        condition(echo, 'Ready')?.status === 'True';
      if (done) break;
    }
    // A rollout this short may be written as its outcome alone; whatever was written for the new
    // generation before it said RollingOut, and nothing said Ready before every pod was.
    const forNew = versions.filter((e) => e.status?.observedGeneration === generation);
    for (const e of forNew.slice(0, -1)) {
      assert.equal(condition(e, 'Ready')?.status, 'False');
      assert.equal(condition(e, 'Progressing')?.reason, 'RollingOut');
    }
    const last = forNew.at(-1)!;
    assert.equal(condition(last, 'Ready')?.observedGeneration, generation);
    assert.equal(condition(last, 'Progressing')?.reason, 'Complete');
    assert.equal(last.status?.updatedReplicas, 2);
    const d = await admin.request<{
      spec: { template: { spec: { containers: { name: string; image: string }[] } } };
    }>({ path: `${inPlain.deployments()}/image` });
    assert.equal(d.spec.template.spec.containers.find((c) => c.name === 'echo')?.image, image);
  });

  it("writes a slow rollout's progress once it has lasted the hold, then its outcome", async () => {
    // A Deployment of the Echo's name and selector already there, labelled as the operator's and
    // controlled by nobody, whose pods no node takes (its nodeSelector is another manager's): the
    // Echo adopts it, and its rollout cannot end.
    const labels = { 'app.kubernetes.io/name': 'echo', 'app.kubernetes.io/instance': 'slow' };
    await admin.request({
      method: 'POST',
      path: inPlain.deployments(),
      query: { fieldManager: 'scheduling-policy' },
      body: {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'slow', labels: { 'app.kubernetes.io/managed-by': 'echo-operator' } },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              nodeSelector: { 'example.com/pool': 'none' },
              containers: [{ name: 'echo', image: 'inanimate/echo-server' }],
            },
          },
        },
      },
    });
    const created = await inPlain.createEcho('slow', 2);
    const rolling = await readyReason(inPlain, 'slow', 'RollingOut');
    assert.equal(rolling.status?.observedGeneration, created.metadata.generation);
    assert.equal(condition(rolling, 'Ready')?.status, 'False');
    assert.equal(condition(rolling, 'Progressing')?.status, 'True');
    assert.match(condition(rolling, 'Ready')?.message ?? '', /^0\/2 replicas ready, \d updated$/);

    patchDeployment(plain, 'slow', 'scheduling-policy', {
      spec: { template: { spec: { nodeSelector: null } } },
    });
    const ready = await inPlain.readyEcho('slow', 2);
    assert.equal(condition(ready, 'Progressing')?.reason, 'Complete');
  });

  it('names a quota that refuses pods, with one Warning, both cleared when the quota grows', async () => {
    const quotas = `/api/v1/namespaces/${quota.name}/resourcequotas`;
    await admin.request({
      method: 'POST',
      path: quotas,
      body: { metadata: { name: 'q' }, spec: { hard: { pods: '1' } } },
    });
    // Until the quota controller has counted the namespace, admission refuses with another message.
    await eventually('the quota counted', async () => {
      const q = await admin.request<{ status?: { used?: { pods?: string } } }>({
        path: `${quotas}/q`,
      });
      return q.status?.used?.pods === '0' ? true : undefined;
    });
    await inQuota.createEcho('quota', 3);
    const failing = await readyReason(inQuota, 'quota', 'FailedCreate');
    const ready = condition(failing, 'Ready');
    assert.equal(ready?.status, 'False');
    assert.match(
      ready.message,
      /^\d\/3 replicas ready, \d updated: pods ".+" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1$/,
    );
    assert.equal(condition(failing, 'Progressing')?.status, 'False');
    assert.equal(condition(failing, 'Progressing')?.reason, 'FailedCreate');
    await eventually('the Warning in kubectl describe', () => {
      const described = kubectl('-n', quota.name, 'describe', 'echo', 'quota');
      return Promise.resolve(
        /Warning\s+FailedCreate\s+.*exceeded quota: q/.test(described) ? true : undefined,
      );
    });

    await inQuota.patch(`${quotas}/q`, { spec: { hard: { pods: '3' } } });
    await inQuota.readyEcho('quota', 3);
    await eventsAre(quota, 'quota', ['Warning FailedCreate', 'Normal Recovered']);
  });

  it('names a ReplicaSet the Deployment controller cannot create, with one Warning', async () => {
    // A quota on ReplicaSets (or an admission webhook) refuses the Deployment's ReplicaSet: the
    // Deployment says Progressing=False, ReplicaSetCreateError (1.33 to 1.37 alike).
    const quotas = `/api/v1/namespaces/${replicaSetQuota.name}/resourcequotas`;
    await admin.request({
      method: 'POST',
      path: quotas,
      body: { metadata: { name: 'rs' }, spec: { hard: { 'count/replicasets.apps': '0' } } },
    });
    await eventually('the quota counted', async () => {
      const q = await admin.request<{ status?: { used?: Record<string, string> } }>({
        path: `${quotas}/rs`,
      });
      return q.status?.used?.['count/replicasets.apps'] === '0' ? true : undefined;
    });
    await inReplicaSetQuota.createEcho('refused', 1);
    const failing = await readyReason(inReplicaSetQuota, 'refused', 'ReplicaSetCreateError');
    const ready = condition(failing, 'Ready');
    assert.equal(ready?.status, 'False');
    assert.match(ready.message, /^0\/1 replicas ready, 0 updated: .*exceeded quota: rs/);
    assert.equal(condition(failing, 'Progressing')?.reason, 'ReplicaSetCreateError');
    await eventsAre(replicaSetQuota, 'refused', ['Warning ReplicaSetCreateError']);

    await inReplicaSetQuota.patch(`${quotas}/rs`, {
      spec: { hard: { 'count/replicasets.apps': '1' } },
    });
    await inReplicaSetQuota.readyEcho('refused', 1);
    await eventsAre(replicaSetQuota, 'refused', [
      'Warning ReplicaSetCreateError',
      'Normal Recovered',
    ]);
  });

  it('runs in a namespace enforcing PodSecurity restricted, and names a sidecar it refuses', async () => {
    await inRestricted.createEcho('secure', 2);
    await inRestricted.readyEcho('secure', 2);
    // A sidecar without the container settings `restricted` asks for: its pods are refused.
    patchDeployment(restricted, 'secure', 'mesh', {
      spec: { template: { spec: { containers: [{ name: 'sidecar', image: 'busybox' }] } } },
    });
    const failing = await readyReason(inRestricted, 'secure', 'FailedCreate');
    assert.match(
      condition(failing, 'Ready')?.message ?? '',
      /^2\/2 replicas ready, 0 updated: pods ".+" is forbidden: violates PodSecurity "restricted:latest": .*container "sidecar"/,
    );

    patchDeployment(restricted, 'secure', 'mesh', {
      spec: { template: { spec: { containers: [{ name: 'sidecar', $patch: 'delete' }] } } },
    });
    await inRestricted.readyEcho('secure', 2);
    await eventsAre(restricted, 'secure', ['Warning FailedCreate', 'Normal Recovered']);
  });

  it('names a rollout past its progress deadline, cleared when the rollout goes through', async () => {
    await inPlain.createEcho('stalled', 2);
    await inPlain.readyEcho('stalled', 2);
    // Pods no node can take, and a deadline of seconds: the rollout stalls and times out.
    patchDeployment(plain, 'stalled', 'scheduling-policy', {
      spec: {
        progressDeadlineSeconds: 3,
        template: { spec: { nodeSelector: { 'example.com/pool': 'none' } } },
      },
    });
    const stalled = await readyReason(inPlain, 'stalled', 'ProgressDeadlineExceeded');
    assert.match(
      condition(stalled, 'Ready')?.message ?? '',
      /^2\/2 replicas ready, 1 updated: ReplicaSet ".+" has timed out progressing/,
    );
    assert.equal(condition(stalled, 'Progressing')?.status, 'False');

    patchDeployment(plain, 'stalled', 'scheduling-policy', {
      spec: { template: { spec: { nodeSelector: null } } },
    });
    await inPlain.readyEcho('stalled', 2);
    await eventsAre(plain, 'stalled', ['Warning ProgressDeadlineExceeded', 'Normal Recovered']);
  });
});
