// The runtime is a runtime: a second, unrelated controller (examples/configmap-mirror, written from
// `echo-operator/runtime` alone) runs beside the Echo controller in one Manager, the one main
// builds, against the local control plane; both converge, share the Manager's client and probes,
// and stop together.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MIRROR_LABEL, mirrorController } from '../../examples/configmap-mirror/mirror.ts';
import { parseConfig } from '../../src/config.ts';
import { isNotFound } from '../../src/kube/errors.ts';
import { operatorManager } from '../../src/main.ts';
import { createLoggers } from '../../src/telemetry/logger.ts';
import { echoManifest } from '../support/echo.ts';
import { clusterKubeconfig, eventually } from '../support/kube.ts';
import { useNamespaces } from '../support/namespaces.ts';

const configMaps = (ns: string): string => `/api/v1/namespaces/${ns}/configmaps`;

interface ConfigMap {
  metadata: { labels?: Record<string, string> };
  data?: Record<string, string>;
}

describe('a second controller in the operator’s Manager', () => {
  const {
    admin,
    namespaces: [source, target],
  } = useNamespaces(['mirror-src', 'mirror-dst']);

  it('mirrors ConfigMaps while the Echo controller reconciles Echoes, and both stop together', async () => {
    const parsed = parseConfig(
      [
        `--kubeconfig=${clusterKubeconfig()}`,
        '--port=0',
        `--namespaces=${source.name},${target.name}`,
      ],
      {},
      'second-controller-test',
    );
    assert.ok(parsed.kind === 'run');
    const loggers = createLoggers(process.env.ECHO_TEST_LOG ?? 'warn', process.stderr);
    const manager = operatorManager(parsed.config, loggers.module);
    const mirror = manager.add(mirrorController);
    const stop = new AbortController();
    const running = manager.run(stop.signal);
    try {
      await mirror.whenSynced();
      await admin.request({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${source.name}/echoes`,
        body: echoManifest({ name: 'web', replicas: 2 }),
      });
      const createConfigMap = (ns: string, name: string, body: object) =>
        admin.request({
          method: 'POST',
          path: configMaps(ns),
          body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, ...body },
        });
      // A user's own ConfigMap where a copy would go: never written.
      await createConfigMap(target.name, 'users', { data: { mine: 'yes' } });
      // Labelled with its own namespace: nowhere else to go, so it is left as it is.
      for (const [name, to] of [
        ['own-namespace', source.name],
        ['users', target.name],
        ['settings', target.name],
      ] as const) {
        await createConfigMap(source.name, name, {
          metadata: { name, labels: { [MIRROR_LABEL]: to } },
          data: { greeting: 'hello' },
        });
      }
      const copy = (): Promise<ConfigMap> =>
        admin.request<ConfigMap>({ path: `${configMaps(target.name)}/settings` });
      const copyWith = (greeting: string) =>
        eventually(`the copy to say ${greeting}`, async () =>
          (await copy()).data?.greeting === greeting ? true : undefined,
        );
      await copyWith('hello');
      await eventually('the Echo’s Deployment', async () => {
        const d = await admin.request<{ spec: { replicas: number } }>({
          path: `/apis/apps/v1/namespaces/${source.name}/deployments/web`,
        });
        return d.spec.replicas === 2 ? true : undefined;
      });

      // The source changes: the copy follows.
      await admin.request({
        method: 'PATCH',
        path: `${configMaps(source.name)}/settings`,
        contentType: 'application/merge-patch+json',
        body: { data: { greeting: 'bonjour' } },
      });
      await copyWith('bonjour');
      // Someone edits the copy: it is put back (its watch maps it to its source).
      await admin.request({
        method: 'PATCH',
        path: `${configMaps(target.name)}/settings`,
        contentType: 'application/merge-patch+json',
        body: { data: { greeting: 'edited' } },
      });
      await copyWith('bonjour');
      // The source goes: so does the copy.
      await admin.request({ method: 'DELETE', path: `${configMaps(source.name)}/settings` });
      await eventually('the copy to be deleted', async () => {
        try {
          await copy();
          return undefined;
        } catch (err) {
          if (isNotFound(err)) return true;
          throw err;
        }
      });
      const own = await admin.request<ConfigMap>({
        path: `${configMaps(source.name)}/own-namespace`,
      });
      assert.deepEqual(
        own.metadata.labels,
        { [MIRROR_LABEL]: source.name },
        'not copied onto itself',
      );
      const users = await admin.request<ConfigMap>({ path: `${configMaps(target.name)}/users` });
      assert.deepEqual(
        { labels: users.metadata.labels, data: users.data },
        { labels: undefined, data: { mine: 'yes' } },
        "the user's ConfigMap of a copy's name is not taken over",
      );
      assert.ok(manager.ready, `ready: ${JSON.stringify(manager.cacheSizes())}`);
      assert.deepEqual(Object.keys(manager.cacheSizes()).sort(), [
        'configmaps',
        'copies',
        'deployments',
        'echoes',
      ]);
    } finally {
      stop.abort();
      await running;
    }
  });
});
