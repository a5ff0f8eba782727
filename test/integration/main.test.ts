// main, in-process, against the local control plane: the same entry point the container runs,
// stopped by the caller's signal instead of SIGTERM, returning its exit code.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main } from '../../src/main.ts';
import { echoManifest } from '../support/echo.ts';
import { clusterKubeconfig, eventually } from '../support/kube.ts';
import { useNamespace } from '../support/namespaces.ts';

describe('main in-process', () => {
  const { admin, ns } = useNamespace('main');

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
        body: echoManifest({ name: 'web', replicas: 1 }),
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
