// The Deployment cache watched in protobuf holds what it holds watched in JSON: two informers over
// the same Deployments of a real API server, one decoding protobuf (the operator's), one JSON,
// compared object by object after the WatchList start, a spec change, status-only changes from the
// Deployment controller, and a delete.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Echo } from '../../src/echo/api.ts';
import { trimDeployment, type CachedDeployment } from '../../src/echo/projection.ts';
import { decodeDeployment } from '../../src/echo/deployment-protobuf.ts';
import {
  APPLIED_HASH_ANNOTATION,
  desiredDeployment,
  FIELD_MANAGER,
} from '../../src/echo/desired.ts';
import { Informer } from '../../src/runtime/cache/informer.ts';
import { echoManifest } from '../support/echo.ts';
import { eventually } from '../support/kube.ts';
import { useNamespace } from '../support/namespaces.ts';

describe('Deployments watched in protobuf', () => {
  const { admin, ns, cleanup } = useNamespace('protobuf');
  let protobuf: Informer<CachedDeployment>;
  let json: Informer<CachedDeployment>;
  const stop = new AbortController();
  let running: Promise<unknown>;
  /** Objects the protobuf informer decoded: proof that the server did answer in protobuf. */
  let decoded = 0;

  const path = (name = ''): string =>
    `/apis/apps/v1/namespaces/${ns.name}/deployments${name ? `/${name}` : ''}`;
  const apply = (name: string, body: unknown, manager = FIELD_MANAGER): Promise<unknown> =>
    admin.apply(path(name), body, manager);

  /** Both caches hold the same resourceVersions as the server, and the same objects. */
  const sameAsServer = async (): Promise<void> => {
    const served = await eventually('both caches at the server’s resourceVersions', async () => {
      const list = await admin.request<{ items: CachedDeployment[] }>({ path: path() });
      const versions = new Map(
        list.items.map((d) => [`${ns.name}/${d.metadata.name}`, d.metadata.resourceVersion]),
      );
      const caught = (informer: Informer<CachedDeployment>): boolean =>
        informer.size === versions.size &&
        [...versions].every(([k, v]) => informer.get(k)?.metadata.resourceVersion === v);
      return caught(protobuf) && caught(json) ? versions : undefined;
    });
    for (const key of served.keys()) assert.deepEqual(protobuf.get(key), json.get(key), key);
  };

  before(async () => {
    // A real Echo as the owner, so the garbage collector leaves the Deployment be (no operator runs
    // here to act on it).
    const echo = await admin.request<Echo>({
      method: 'POST',
      path: `/apis/example.com/v1/namespaces/${ns.name}/echoes`,
      body: echoManifest({ name: 'desired', replicas: 2, labels: { team: 'a' } }),
    });
    // The operator's own Deployment, and one with what others may add: every field of a port,
    // a second container, a pointer set to its zero value, annotations not kept.
    await apply('desired', desiredDeployment(echo));
    await apply(
      'edited',
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: {
          name: 'edited',
          labels: { app: 'edited', 'app.kubernetes.io/managed-by': 'someone' },
          annotations: { [APPLIED_HASH_ANNOTATION]: 'abc', other: 'dropped' },
        },
        spec: {
          replicas: 0,
          selector: { matchLabels: { app: 'edited' } },
          template: {
            metadata: { labels: { app: 'edited' } },
            spec: {
              securityContext: { runAsNonRoot: false },
              containers: [
                {
                  name: 'a',
                  image: 'example/a:1',
                  ports: [
                    {
                      name: 'dns',
                      containerPort: 53,
                      hostPort: 5353,
                      protocol: 'UDP',
                      hostIP: '127.0.0.1',
                    },
                    { containerPort: 8080 },
                  ],
                  securityContext: {
                    allowPrivilegeEscalation: true,
                    capabilities: { add: ['NET_ADMIN'] },
                  },
                },
                { name: 'b', image: 'example/b:1' },
              ],
            },
          },
        },
      },
      'someone',
    );

    const informer = (decode: boolean): Informer<CachedDeployment> =>
      new Informer<CachedDeployment>({
        name: decode ? 'protobuf' : 'json',
        client: admin,
        path: path(),
        transform: trimDeployment,
        ...(decode
          ? {
              protobuf: (raw: Buffer, cached: (key: string) => CachedDeployment | undefined) => {
                decoded++;
                return decodeDeployment(raw, cached);
              },
            }
          : {}),
      });
    protobuf = informer(true);
    json = informer(false);
    running = Promise.all([protobuf.run(stop.signal), json.run(stop.signal)]);
    await Promise.all([protobuf.whenSynced(), json.whenSynced()]);
  });

  cleanup(async () => {
    stop.abort();
    await running.catch(() => undefined);
  });

  it('start with the same objects (WatchList initial events)', async () => {
    await sameAsServer();
    assert.ok(decoded >= 2, 'each Deployment decoded from protobuf');
    const desired = protobuf.get(`${ns.name}/desired`);
    assert.ok(desired);
    assert.equal(desired.spec?.replicas, 2, 'the decoded Deployment carries its spec');
    assert.ok(desired.metadata.ownerReferences?.[0]?.uid, 'and its owner');
  });

  it('follow a spec change, the status the Deployment controller writes, and a delete', async () => {
    await admin.request({
      method: 'PATCH',
      path: path('desired'),
      contentType: 'application/merge-patch+json',
      body: {
        spec: {
          replicas: 3,
          template: { spec: { containers: [{ name: 'echo', image: 'example/c:2' }] } },
        },
      },
    });
    // The rollout's status updates arrive as status-only events, decoded without the spec.
    await eventually('the Deployment controller has seen the change', () => {
      const d = protobuf.get(`${ns.name}/desired`);
      const seen = d !== undefined && d.status?.observedGeneration === d.metadata.generation;
      return Promise.resolve(seen ? true : undefined);
    });
    await sleep(500);
    await sameAsServer();
    await admin.request({ method: 'DELETE', path: path('edited') });
    await sameAsServer();
    assert.equal(protobuf.get(`${ns.name}/edited`), undefined);
  });
});
