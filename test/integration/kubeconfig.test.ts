// Kubeconfigs as kubectl reads them, through the operator process (`node src/main.ts`) against the
// shared local cluster: the KUBECONFIG list merged across files, each in a directory of its own.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { KubeClient } from '../../src/kube/client.ts';
import { echoManifest } from '../support/fixtures.ts';
import { startMain, whenReady, type OperatorProcess } from '../support/main-process.ts';
import {
  adminClient,
  clusterAddress,
  clusterKubeconfig,
  createNamespace,
  eventually,
} from '../support/kube.ts';

describe('kubeconfig, through the operator process', () => {
  let admin: KubeClient;
  let ns: Awaited<ReturnType<typeof createNamespace>>;
  /** Kubeconfigs and the files they name, beside the cluster's own so they go with it. */
  let work: string;
  const clusterDir = (): string => dirname(clusterKubeconfig());

  before(async () => {
    admin = adminClient();
    ns = await createNamespace(admin, 'kubeconfig');
    work = await mkdtemp(join(clusterDir(), 'kubeconfig-test-'));
  });

  after(async () => {
    await ns.remove();
    await admin.close();
    await rm(work, { recursive: true, force: true });
  });

  /** Writes `content` as YAML to `path` (its directory created), and returns the path. */
  const writeYaml = async (path: string, content: unknown): Promise<string> => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, stringify(content), { mode: 0o600 });
    return path;
  };

  /** Copies one of the cluster's certificate files to `path`. */
  const copyClusterFile = async (name: string, path: string): Promise<void> => {
    await mkdir(dirname(path), { recursive: true });
    await copyFile(join(clusterDir(), name), path);
  };

  /**
   * Waits until the operator is ready and has made the Deployment of a new Echo `name`, then stops
   * it: it listed, watched and wrote with the credentials it was given. Fails at once, with the
   * operator's output, if it exits instead.
   */
  const reconciles = async (p: OperatorProcess, name: string): Promise<void> => {
    const exitedEarly = p.exited.then((code) => {
      throw new Error(`the operator exited (${String(code)}):\n${p.output()}`);
    });
    try {
      await Promise.race([whenReady(p), exitedEarly]);
      await admin.request({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${ns.name}/echoes`,
        body: echoManifest(name, 1),
      });
      await Promise.race([
        eventually(`the Deployment of ${name}`, async () => {
          const d = await admin.request<{ spec: { replicas: number } }>({
            path: `/apis/apps/v1/namespaces/${ns.name}/deployments/${name}`,
          });
          return d.spec.replicas === 1 ? true : undefined;
        }),
        exitedEarly,
      ]);
    } finally {
      exitedEarly.catch(() => undefined);
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0, p.output());
  };

  it('merges the KUBECONFIG list: the server from one file, the user from another, first wins', async () => {
    const { server } = clusterAddress();
    // Relative paths resolve against the directory of the file that names them.
    await copyClusterFile('ca.crt', join(work, 'a', 'ca.crt'));
    await copyClusterFile('admin.crt', join(work, 'b', 'certs', 'admin.crt'));
    await copyClusterFile('admin.key', join(work, 'b', 'certs', 'admin.key'));
    const first = await writeYaml(join(work, 'a', 'config'), {
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'merged',
      clusters: [{ name: 'local', cluster: { server, 'certificate-authority': 'ca.crt' } }],
      contexts: [{ name: 'merged', context: { cluster: 'local', user: 'admin' } }],
    });
    const second = await writeYaml(join(work, 'b', 'config'), {
      apiVersion: 'v1',
      kind: 'Config',
      // Both lose to the first file's: its current-context and its cluster of the same name.
      'current-context': 'elsewhere',
      clusters: [{ name: 'local', cluster: { server: 'https://127.0.0.1:1' } }],
      users: [
        {
          name: 'admin',
          user: { 'client-certificate': 'certs/admin.crt', 'client-key': 'certs/admin.key' },
        },
      ],
    });
    // An empty entry and a missing file are skipped, as client-go does.
    const list = [first, '', join(work, 'missing'), second].join(':');
    const p = startMain([`--namespaces=${ns.name}`], { KUBECONFIG: list });
    await reconciles(p, 'merged');
  });
});
