// `make run CLUSTER=current`, as a user with a cluster of their own runs it: a second local cluster
// stands in for theirs, reached only through KUBECONFIG, with no Echo CRD until the target installs it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LocalCluster, writeKubeconfig } from '../../hack/cluster/cluster.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { echoManifest } from '../support/echo.ts';
import { clusterAddress, eventually } from '../support/kube.ts';
import { captured, logsPort, type OperatorProcess } from '../support/main-process.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** `make run CLUSTER=current` in its own process group (make, then the operator under it). */
function makeRunCurrent(env: Record<string, string>): OperatorProcess {
  const inherited = { ...process.env };
  // Nothing of this machine's own kubeconfig or pod identity may leak into what the target sees.
  delete inherited.KUBECONFIG;
  delete inherited.KUBERNETES_SERVICE_HOST;
  delete inherited.KUBERNETES_SERVICE_PORT;
  const child = spawn(
    'make',
    ['-s', 'run', 'CLUSTER=current', 'RUN_FLAGS=--port=0 --log-format=json'],
    {
      cwd: repoRoot,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...inherited, ...env },
    },
  );
  return captured(child);
}

async function stopGroup(p: OperatorProcess): Promise<void> {
  if (p.child.exitCode === null && p.child.pid !== undefined) {
    try {
      process.kill(-p.child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await p.exited;
}

describe('make run CLUSTER=current', () => {
  let home: string;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'echo-run-current-'));
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it('refuses, naming what is missing, when there is no kubeconfig', async () => {
    const run = makeRunCurrent({ HOME: home });
    assert.notEqual(await run.exited, 0);
    assert.match(run.output(), /\[current\] no kubeconfig: pass --kubeconfig, set KUBECONFIG/);
    assert.doesNotMatch(run.output(), /echo-operator starting/);
  });

  it('refuses, naming the server, when the API server does not answer', async () => {
    // A port nothing listens on: the shared cluster's address with port 1.
    const { caFile } = clusterAddress();
    const kubeconfig = join(home, 'unreachable.kubeconfig');
    await writeKubeconfig(kubeconfig, 'https://127.0.0.1:1', caFile, { token: 'unused' });
    const run = makeRunCurrent({ HOME: home, KUBECONFIG: kubeconfig });
    assert.notEqual(await run.exited, 0);
    assert.match(run.output(), /\[current\] using .*unreachable\.kubeconfig \(context [^)]+\)/);
    assert.match(
      run.output(),
      /\[current\] cannot reach the API server at https:\/\/127\.0\.0\.1:1/,
    );
    assert.doesNotMatch(run.output(), /echo-operator starting/);
  });

  it('installs the CRD in the current context and runs the operator there', async () => {
    const theirs = await LocalCluster.start();
    const admin = KubeClient.fromFile(theirs.kubeconfig);
    const run = makeRunCurrent({ HOME: home, KUBECONFIG: theirs.kubeconfig });
    try {
      await logsPort(run);
      const out = run.output();
      assert.match(
        out,
        new RegExp(
          `\\[current\\] using ${theirs.kubeconfig} \\(context [^)]+\\), server ${theirs.state.server}`,
        ),
      );
      assert.match(out, /\[current\] Echo CRD installed or updated/);
      const crd = await admin.request<{ metadata: { managedFields: { manager: string }[] } }>({
        path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/echoes.example.com',
      });
      assert.ok(crd.metadata.managedFields.some((f) => f.manager === 'echo-operator-make-run'));
      await admin.request({
        method: 'POST',
        path: '/apis/example.com/v1/namespaces/default/echoes',
        body: echoManifest({ name: 'from-make-run', replicas: 2 }),
      });
      const deployment = await eventually('the Echo to get its Deployment', async () => {
        try {
          return await admin.request<{ spec: { replicas: number } }>({
            path: '/apis/apps/v1/namespaces/default/deployments/from-make-run',
          });
        } catch {
          return undefined;
        }
      });
      assert.equal(deployment.spec.replicas, 2);
    } finally {
      await stopGroup(run);
      await admin.close();
      await theirs.stop();
    }
  });
});
