// main, in-process, against the local control plane: the same entry point the container runs,
// stopped by the caller's signal instead of SIGTERM, returning its exit code.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KubeClient } from '../../src/kube/client.ts';
import { main } from '../../src/main.ts';
import { echoManifest } from '../support/fixtures.ts';
import { adminClient, clusterKubeconfig, createNamespace, eventually } from '../support/kube.ts';

describe('main in-process', () => {
  let admin: KubeClient;
  let ns: Awaited<ReturnType<typeof createNamespace>>;

  before(async () => {
    admin = adminClient();
    ns = await createNamespace(admin, 'main');
  });

  after(async () => {
    await ns.remove();
    await admin.close();
  });

  it('reconciles an Echo and returns 0 once its signal stops it', async () => {
    const stop = new AbortController();
    const exited = main(
      [
        `--kubeconfig=${clusterKubeconfig()}`,
        '--port=0',
        `--namespaces=${ns.name}`,
        `--log-filter=${process.env.ECHO_TEST_LOG ?? 'warn'}`,
      ],
      {},
      stop.signal,
    );
    try {
      await admin.request({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${ns.name}/echoes`,
        body: echoManifest('web', 1),
      });
      await eventually('the Deployment', () =>
        admin.request({ path: `/apis/apps/v1/namespaces/${ns.name}/deployments/web` }),
      );
    } finally {
      stop.abort();
    }
    assert.equal(await exited, 0);
  });
});
