import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Echo } from '../../../src/echo/api.ts';
import {
  APPLIED_HASH_ANNOTATION,
  deploymentDrift,
  desiredDeployment,
  firstDifference,
  instanceLabel,
  selectorString,
} from '../../../src/echo/desired.ts';
import { SLOT_LABEL, slotOf } from '../../../src/runtime/sharding/buckets.ts';
import { echo as cachedEcho, type CachedEchoFields } from '../../support/echo.ts';

const echo = (fields: CachedEchoFields = {}): Echo =>
  cachedEcho({ generation: 2, replicas: 3, ...fields });

describe('desiredDeployment', () => {
  it('labels the Deployment with its Echo’s hash slot, and only the Deployment', () => {
    const d = desiredDeployment(echo({ uid: 'test-uid-123' }));
    assert.equal(SLOT_LABEL, 'sharding.example.com/slot');
    assert.equal(d.metadata.labels[SLOT_LABEL], slotOf('test-uid-123'));
    assert.equal(d.metadata.labels[SLOT_LABEL], 'd0');
    // The selector cannot change, and a pod template label would roll the pods.
    assert.equal(d.spec.selector.matchLabels[SLOT_LABEL], undefined);
    assert.equal(d.spec.template.metadata.labels[SLOT_LABEL], undefined);
    const user = desiredDeployment(echo({ uid: 'test-uid-123', labels: { [SLOT_LABEL]: 'ff' } }));
    assert.equal(user.metadata.labels[SLOT_LABEL], 'd0', 'the operator’s label wins');
  });

  it('stamps no slot for an Echo without a uid', () => {
    const { uid: _uid, ...metadata } = echo().metadata;
    const noUid = { ...echo(), metadata } as unknown as Echo;
    for (const e of [noUid, echo({ uid: '' })]) {
      assert.equal(SLOT_LABEL in desiredDeployment(e).metadata.labels, false);
    }
  });

  it('runs spec.replicas echo-server pods, controlled by the Echo', () => {
    const d = desiredDeployment(echo());
    assert.equal(d.metadata.name, 'web');
    assert.equal(d.metadata.namespace, 'team');
    assert.equal(d.spec.replicas, 3);
    assert.deepEqual(d.metadata.ownerReferences, [
      {
        apiVersion: 'example.com/v1',
        kind: 'Echo',
        name: 'web',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    const [container] = d.spec.template.spec.containers;
    assert.equal(container?.image, 'inanimate/echo-server');
    assert.deepEqual(container.ports, [{ name: 'http', containerPort: 8080 }]);
    assert.equal(d.metadata.labels['app.kubernetes.io/managed-by'], 'echo-operator');
  });

  it('runs pods that PodSecurity `restricted` admits, as a user other than root', () => {
    const { spec } = desiredDeployment(echo()).spec.template;
    assert.equal(spec.securityContext.runAsNonRoot, true);
    assert.ok(spec.securityContext.runAsUser > 0, 'the default image names no user');
    assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
    for (const c of spec.containers) {
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    }
  });

  it('uses the image the Echo names', () => {
    assert.equal(
      desiredDeployment(echo({ image: 'my/echo:2' })).spec.template.spec.containers[0]?.image,
      'my/echo:2',
    );
  });

  it('copies the Echo labels onto the Deployment but never into its selector or pods', () => {
    const d = desiredDeployment(
      echo({ labels: { team: 'a', 'app.kubernetes.io/managed-by': 'me' } }),
    );
    assert.equal(d.metadata.labels.team, 'a');
    assert.equal(d.metadata.labels['app.kubernetes.io/managed-by'], 'echo-operator', 'ours wins');
    assert.deepEqual(d.spec.selector.matchLabels, {
      'app.kubernetes.io/name': 'echo',
      'app.kubernetes.io/instance': 'web',
    });
    assert.deepEqual(d.spec.template.metadata.labels, d.spec.selector.matchLabels);
  });

  it('keeps the selector when only labels change, and changes the hash', () => {
    const a = desiredDeployment(echo({ labels: { tier: 'one' } }));
    const b = desiredDeployment(echo({ labels: { color: 'blue' } }));
    assert.deepEqual(a.spec.selector, b.spec.selector);
    assert.notEqual(
      a.metadata.annotations[APPLIED_HASH_ANNOTATION],
      b.metadata.annotations[APPLIED_HASH_ANNOTATION],
    );
  });

  it('is a pure function of the Echo', () => {
    assert.deepEqual(desiredDeployment(echo()), desiredDeployment(echo()));
    assert.deepEqual(
      desiredDeployment(echo({ resourceVersion: '99', generation: 5 })),
      desiredDeployment(echo()),
      'resourceVersion and generation do not change the Deployment',
    );
  });
});

describe('instanceLabel', () => {
  it('is the name itself up to 63 characters', () => {
    const name = 'a'.repeat(63);
    assert.equal(instanceLabel(name), name);
  });
  it('shortens longer names to a valid, distinct label value', () => {
    const a = instanceLabel(`${'a'.repeat(100)}.x`);
    const b = instanceLabel(`${'a'.repeat(100)}.y`);
    for (const v of [a, b]) {
      assert.ok(v.length <= 63);
      assert.match(v, /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/);
    }
    assert.notEqual(a, b);
    assert.equal(instanceLabel(`${'a'.repeat(100)}.x`), a, 'stable');
  });
  it('gives the status selector', () => {
    assert.equal(
      selectorString(echo()),
      'app.kubernetes.io/name=echo,app.kubernetes.io/instance=web',
    );
  });
});

describe('deploymentDrift', () => {
  const desired = desiredDeployment(echo());
  type Container = Record<string, unknown> & { name: string; ports?: Record<string, unknown>[] };
  type Live = Record<string, unknown> & {
    metadata: {
      labels: Record<string, string>;
      annotations: Record<string, string>;
      ownerReferences: Record<string, unknown>[];
    };
    spec: Record<string, unknown> & {
      replicas: number;
      template: {
        metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
        spec: { containers: Container[] };
      };
    };
  };
  // What the API server returns: our fields plus defaults and fields of others, no apiVersion in lists.
  const live = (): Live => {
    const copy = structuredClone(desired) as unknown as Live;
    delete copy.apiVersion;
    delete copy.kind;
    copy.spec.revisionHistoryLimit = 10;
    const [container] = copy.spec.template.spec.containers;
    container!.imagePullPolicy = 'Always';
    container!.terminationMessagePath = '/dev/termination-log';
    container!.ports![0]!.protocol = 'TCP';
    return copy;
  };
  const containers = (d: Live): Container[] => d.spec.template.spec.containers;

  it("sees no drift where the server only added defaults and others' fields", () => {
    assert.equal(deploymentDrift(desired, live()), undefined);
  });

  it('sees no drift in what other field managers added: containers, env, ports, labels, owners', () => {
    const d = live();
    d.metadata.labels['policy.example/scanned'] = 'true';
    d.metadata.annotations['mesh.example/status'] = 'injected';
    d.metadata.ownerReferences.push({ apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: 'u2' });
    d.spec.template.metadata.labels['mesh.example/rev'] = '1';
    d.spec.template.metadata.annotations = { 'kubectl.kubernetes.io/restartedAt': 'now' };
    // A sidecar ahead of ours, as a strategic merge patch may place it.
    containers(d).unshift({ name: 'sidecar', image: 'busybox' });
    const ours = containers(d)[1]!;
    ours.env = [{ name: 'INJECTED', value: 'yes' }];
    ours.ports!.push({ name: 'metrics', containerPort: 9090, protocol: 'TCP' });
    assert.equal(deploymentDrift(desired, d), undefined);
  });

  it('reports a missing Deployment', () => {
    assert.equal(deploymentDrift(desired, undefined), 'missing');
  });
  it('reports a hand edit of the replicas', () => {
    const edited = live();
    edited.spec.replicas = 5;
    assert.equal(deploymentDrift(desired, edited), 'spec.replicas');
  });
  it("reports a change of the operator's container by its name, beside a sidecar", () => {
    const d = live();
    containers(d).push({ name: 'sidecar', image: 'busybox' });
    containers(d)[0]!.image = 'someone/else:1';
    assert.equal(deploymentDrift(desired, d), 'spec.template.spec.containers[name=echo].image');
  });
  it("reports the operator's container gone, even with as many containers as it wants", () => {
    const d = live();
    containers(d)[0]!.name = 'renamed';
    assert.equal(deploymentDrift(desired, d), 'spec.template.spec.containers[name=echo]');
  });
  it('matches ports by containerPort and protocol, TCP when unset', () => {
    const d = live();
    containers(d)[0]!.ports![0]!.protocol = 'UDP';
    assert.equal(
      deploymentDrift(desired, d),
      'spec.template.spec.containers[name=echo].ports[containerPort=8080,protocol=TCP]',
    );
  });
  it("reports a label of the operator's changed, not one of another's", () => {
    const d = live();
    d.metadata.labels['app.kubernetes.io/managed-by'] = 'someone';
    assert.equal(deploymentDrift(desired, d), 'metadata.labels.app.kubernetes.io/managed-by');
  });
  it('reports a changed Echo through the applied hash, even for a removed label', () => {
    const withLabel = desiredDeployment(echo({ labels: { gone: 'soon' } }));
    const applied = structuredClone(withLabel);
    // The live labels still hold everything desired; only the hash tells the label must go.
    assert.equal(
      deploymentDrift(desiredDeployment(echo()), applied),
      `metadata.annotations.${APPLIED_HASH_ANNOTATION}`,
    );
  });
});

describe('firstDifference', () => {
  it('compares lists without a merge key whole, by length and position', () => {
    assert.equal(firstDifference({ a: [1, 2] }, { a: [1, 2] }), undefined);
    assert.equal(firstDifference({ a: [1, 2] }, { a: [1] }), 'a');
    assert.equal(firstDifference({ a: [1, 2] }, { a: [1, 2, 3] }), 'a');
    assert.equal(firstDifference({ a: [{ b: 1 }] }, { a: [{ b: 2 }] }), 'a[0].b');
  });
  it('treats a missing object as a difference', () => {
    assert.equal(firstDifference({ a: { b: 1 } }, {}), 'a');
    assert.equal(firstDifference({ a: { b: 1 } }, { a: null }), 'a');
  });
  it('matches env and volumes by name, in any order, ignoring the items of others', () => {
    const pod = (spec: object): object => ({ spec: { template: { spec } } });
    const ours = pod({
      containers: [{ name: 'echo', env: [{ name: 'A', value: '1' }] }],
      volumes: [{ name: 'data', emptyDir: {} }],
    });
    const theirs = pod({
      containers: [
        {
          name: 'echo',
          env: [
            { name: 'INJECTED', value: 'x' },
            { name: 'A', value: '1' },
          ],
        },
      ],
      volumes: [
        { name: 'certs', secret: { secretName: 's' } },
        { name: 'data', emptyDir: {} },
      ],
    });
    assert.equal(firstDifference(ours, theirs), undefined);
    const changed = structuredClone(theirs) as {
      spec: { template: { spec: { containers: { env: { value: string }[] }[] } } };
    };
    changed.spec.template.spec.containers[0]!.env[1]!.value = '2';
    assert.equal(
      firstDifference(ours, changed),
      'spec.template.spec.containers[name=echo].env[name=A].value',
    );
  });
});
