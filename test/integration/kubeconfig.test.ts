// Kubeconfigs as kubectl reads them, through the operator process (`node src/main.ts`) against the
// shared local cluster: the KUBECONFIG list merged across files; kubeconfigs shaped like those kind,
// minikube, EKS, GKE and AKS write (their exec plugins scripted); proxies, started here, counting
// their tunnels; impersonation, as the API server's RBAC and audit log see it; and the kubeconfigs
// the operator refuses, each with a plain message.
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { startConnectProxy, type ConnectProxy } from '../support/connect-proxy.ts';
import { OPERATOR_RULES } from '../support/fixtures.ts';
import { auditEvents, type AuditEvent } from '../support/audit.ts';
import { echoManifest } from '../support/echo.ts';
import { logsPort, startMain, whenReady, type OperatorProcess } from '../support/main-process.ts';
import {
  clusterAddress,
  clusterKubeconfig,
  eventually,
  grantRole,
  serviceAccountToken,
  type TestNamespace,
} from '../support/kube.ts';
import { scrape } from '../support/metrics.ts';
import { useNamespace, testNamespace } from '../support/namespaces.ts';

const EXEC_V1BETA1 = 'client.authentication.k8s.io/v1beta1';

describe('kubeconfig, through the operator process', () => {
  const { admin, ns } = useNamespace('kubeconfig');
  /** Kubeconfigs and the files they name, beside the cluster's own so they go with it. */
  let work: string;
  /** Scripted exec plugins, put first on the operator's PATH. */
  let bin: string;
  /** A token of a ServiceAccount with the operator's rights in `ns`, for the plugins to print. */
  let token: string;
  const clusterDir = (): string => dirname(clusterKubeconfig());
  const base64 = async (name: string): Promise<string> =>
    (await readFile(join(clusterDir(), name))).toString('base64');

  before(async () => {
    work = await mkdtemp(join(clusterDir(), 'kubeconfig-test-'));
    bin = join(work, 'bin');
    await mkdir(bin);
    await grantRole(admin, ns.name, `${ns.name}/operator`, OPERATOR_RULES);
    token = await serviceAccountToken(admin, ns.name, 'operator');
  });

  after(async () => {
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

  /** A kubeconfig of one cluster, user and context, all called `name`, written to `path`. */
  const single = (
    path: string,
    name: string,
    cluster: Record<string, unknown>,
    user: Record<string, unknown>,
  ): Promise<string> =>
    writeYaml(path, {
      apiVersion: 'v1',
      kind: 'Config',
      preferences: {},
      clusters: [{ cluster, name }],
      contexts: [{ context: { cluster: name, user: name }, name }],
      'current-context': name,
      users: [{ name, user }],
    });

  /**
   * A scripted exec plugin called `name` in `bin`: it prints an ExecCredential with the
   * ServiceAccount's token and keeps its arguments, KUBERNETES_EXEC_INFO and the variables
   * `envNames` for `seen()`.
   */
  const scriptedPlugin = async (
    name: string,
    envNames: string[] = [],
  ): Promise<{ seen: () => Promise<Record<string, string>> }> => {
    const path = join(bin, name);
    const credential = JSON.stringify({
      kind: 'ExecCredential',
      apiVersion: EXEC_V1BETA1,
      spec: {},
      status: { expirationTimestamp: new Date(Date.now() + 3_600_000).toISOString(), token },
    });
    const record = ['args=$*', 'info=$KUBERNETES_EXEC_INFO', ...envNames.map((n) => `${n}=$${n}`)]
      .map((line) => `printf '%s\\n' "${line}"`)
      .join('\n');
    await writeFile(
      path,
      `#!/bin/sh\n{\n${record}\n} > "$0.seen"\ncat <<'EOF'\n${credential}\nEOF\n`,
    );
    await chmod(path, 0o755);
    return {
      seen: async () =>
        Object.fromEntries(
          (await readFile(`${path}.seen`, 'utf8'))
            .split('\n')
            .filter(Boolean)
            .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
        ),
    };
  };
  const withPlugins = (): Record<string, string> => ({
    PATH: `${bin}${delimiter}${process.env.PATH ?? ''}`,
  });

  /**
   * Resolves what `wait` resolves; fails at once if the operator exits, and with the end of its
   * log either way.
   */
  const whileRunning = async <T>(p: OperatorProcess, wait: Promise<T>): Promise<T> => {
    const exitedEarly = p.exited.then((code) => {
      throw new Error(`the operator exited (${String(code)})`);
    });
    exitedEarly.catch(() => undefined);
    try {
      return await Promise.race([wait, exitedEarly]);
    } catch (err) {
      const log = p.output().trimEnd().split('\n').slice(-10).join('\n');
      throw new Error(`${(err as Error).message}; the operator's log ends:\n${log}`, {
        cause: err,
      });
    }
  };

  /**
   * Waits until the operator is ready and has made the Deployment of a new Echo `name`, then stops
   * it: it listed, watched and wrote with the credentials it was given. Fails at once, with the
   * operator's output, if it exits instead.
   */
  const reconciles = async (p: OperatorProcess, name: string): Promise<void> => {
    try {
      await whileRunning(p, whenReady(p));
      await admin.request({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${ns.name}/echoes`,
        body: echoManifest({ name, replicas: 1 }),
      });
      await whileRunning(
        p,
        eventually(`the Deployment of ${name}`, async () => {
          const d = await admin.request<{ spec: { replicas: number } }>({
            path: `/apis/apps/v1/namespaces/${ns.name}/deployments/${name}`,
          });
          return d.spec.replicas === 1 ? true : undefined;
        }),
      );
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0, p.output());
  };

  /** Waits for the operator to exit 1 with a plain message (no stack trace), and returns it. */
  const refuses = async (p: OperatorProcess): Promise<string> => {
    assert.equal(await p.exited, 1, p.output());
    assert.doesNotMatch(p.output(), /at .*\.ts:\d+/, 'a message, not a stack trace');
    return p.output();
  };

  const operatorIn = (kubeconfig: string, env: Record<string, string> = {}): OperatorProcess =>
    startMain([`--kubeconfig=${kubeconfig}`, `--namespaces=${ns.name}`], env);

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

  it('runs with a kubeconfig as kind writes it: certificates inline', async () => {
    const { server } = clusterAddress();
    const path = await single(
      join(work, 'kind', 'config'),
      'kind-kind',
      { 'certificate-authority-data': await base64('ca.crt'), server },
      {
        'client-certificate-data': await base64('admin.crt'),
        'client-key-data': await base64('admin.key'),
      },
    );
    await reconciles(operatorIn(path), 'kind');
  });

  it('runs with a kubeconfig as minikube writes it: certificate files, extensions, a namespace', async () => {
    const { server } = clusterAddress();
    const dir = join(work, 'minikube');
    await copyClusterFile('ca.crt', join(dir, '.minikube', 'ca.crt'));
    await copyClusterFile(
      'admin.crt',
      join(dir, '.minikube', 'profiles', 'minikube', 'client.crt'),
    );
    await copyClusterFile(
      'admin.key',
      join(dir, '.minikube', 'profiles', 'minikube', 'client.key'),
    );
    const info = (name: string): unknown => ({
      extension: {
        'last-update': 'Mon, 02 Jun 2025 10:00:00 UTC',
        provider: 'minikube.sigs.k8s.io',
        version: 'v1.36.0',
      },
      name,
    });
    const path = await writeYaml(join(dir, 'config'), {
      apiVersion: 'v1',
      clusters: [
        {
          cluster: {
            'certificate-authority': '.minikube/ca.crt',
            extensions: [info('cluster_info')],
            server,
          },
          name: 'minikube',
        },
      ],
      contexts: [
        {
          context: {
            cluster: 'minikube',
            extensions: [info('context_info')],
            namespace: 'default',
            user: 'minikube',
          },
          name: 'minikube',
        },
      ],
      'current-context': 'minikube',
      kind: 'Config',
      preferences: {},
      users: [
        {
          name: 'minikube',
          user: {
            'client-certificate': '.minikube/profiles/minikube/client.crt',
            'client-key': '.minikube/profiles/minikube/client.key',
          },
        },
      ],
    });
    await reconciles(operatorIn(path), 'minikube');
  });

  it('runs with an EKS kubeconfig: `aws eks get-token`, its arguments and AWS_PROFILE', async () => {
    const { server } = clusterAddress();
    const aws = await scriptedPlugin('aws', ['AWS_PROFILE']);
    const arn = 'arn:aws:eks:us-west-2:123456789012:cluster/echo';
    const path = await single(
      join(work, 'eks', 'config'),
      arn,
      { 'certificate-authority-data': await base64('ca.crt'), server },
      {
        exec: {
          apiVersion: EXEC_V1BETA1,
          args: [
            '--region',
            'us-west-2',
            'eks',
            'get-token',
            '--cluster-name',
            'echo',
            '--output',
            'json',
          ],
          command: 'aws',
          env: [{ name: 'AWS_PROFILE', value: 'echo-test' }],
          interactiveMode: 'IfAvailable',
          provideClusterInfo: false,
        },
      },
    );
    await reconciles(operatorIn(path, withPlugins()), 'eks');
    const seen = await aws.seen();
    assert.equal(seen.args, '--region us-west-2 eks get-token --cluster-name echo --output json');
    assert.equal(seen.AWS_PROFILE, 'echo-test');
    assert.deepEqual(JSON.parse(seen.info ?? ''), {
      apiVersion: EXEC_V1BETA1,
      kind: 'ExecCredential',
      spec: { interactive: false },
    });
  });

  it('runs with a GKE kubeconfig: gke-gcloud-auth-plugin told about the cluster', async () => {
    const { server } = clusterAddress();
    const plugin = await scriptedPlugin('gke-gcloud-auth-plugin');
    const ca = await base64('ca.crt');
    const path = await single(
      join(work, 'gke', 'config'),
      'gke_echo-project_us-central1_echo',
      { 'certificate-authority-data': ca, server },
      {
        exec: {
          apiVersion: EXEC_V1BETA1,
          command: 'gke-gcloud-auth-plugin',
          installHint:
            'Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin',
          provideClusterInfo: true,
        },
      },
    );
    await reconciles(operatorIn(path, withPlugins()), 'gke');
    assert.deepEqual(JSON.parse((await plugin.seen()).info ?? ''), {
      apiVersion: EXEC_V1BETA1,
      kind: 'ExecCredential',
      spec: { interactive: false, cluster: { server, 'certificate-authority-data': ca } },
    });
  });

  describe('AKS, through kubelogin', () => {
    const aks = async (): Promise<string> =>
      single(
        join(work, 'aks', 'config'),
        'echo-aks',
        { 'certificate-authority-data': await base64('ca.crt'), server: clusterAddress().server },
        {
          exec: {
            apiVersion: EXEC_V1BETA1,
            args: [
              'get-token',
              '--login',
              'azurecli',
              '--server-id',
              '6dae42f8-4368-4678-94ff-3960e28e3630',
            ],
            command: 'kubelogin',
            env: null,
            installHint:
              '\nkubelogin is not installed which is required to connect to AAD enabled cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin\n',
            interactiveMode: 'IfAvailable',
            provideClusterInfo: false,
          },
        },
      );

    it('runs with an AKS kubeconfig converted by kubelogin', async () => {
      const kubelogin = await scriptedPlugin('kubelogin');
      await reconciles(operatorIn(await aks(), withPlugins()), 'aks');
      assert.equal(
        (await kubelogin.seen()).args,
        'get-token --login azurecli --server-id 6dae42f8-4368-4678-94ff-3960e28e3630',
      );
    });

    it('exits 1 with the install hint when kubelogin is not installed', async () => {
      const output = await refuses(operatorIn(await aks()));
      assert.match(output, /exec credential plugin \\"kubelogin\\" not found on PATH/);
      assert.match(output, /kubelogin is not installed which is required to connect to AAD/);
    });
  });

  it('exits 1, naming the field, for a kubeconfig asking for what the operator does not do', async () => {
    const { server } = clusterAddress();
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        // What gcloud wrote before gke-gcloud-auth-plugin.
        'gke-auth-provider',
        {
          'auth-provider': {
            config: {
              'cmd-path': '/usr/lib/google-cloud-sdk/bin/gcloud',
              'cmd-args': 'config config-helper --format=json',
            },
            name: 'gcp',
          },
        },
        /users\[0\]\.user\.auth-provider is not supported: use an exec credential plugin/,
      ],
      [
        'interactive',
        {
          exec: {
            apiVersion: 'client.authentication.k8s.io/v1',
            command: '/bin/true',
            interactiveMode: 'Always',
          },
        },
        /users\[0\]\.user\.exec\.interactiveMode Always needs a terminal/,
      ],
      [
        'typo',
        { 'client-certficate': 'admin.crt' },
        /users\[0\]\.user\.client-certficate is not supported/,
      ],
    ];
    for (const [name, user, message] of cases) {
      const path = await single(join(work, name, 'config'), name, { server }, user);
      const output = await refuses(operatorIn(path));
      assert.match(output, message);
      assert.ok(output.includes(path), 'the message names the file');
    }
  });

  describe('proxies', () => {
    const proxies: ConnectProxy[] = [];
    const proxy = async (
      options: Parameters<typeof startConnectProxy>[0],
    ): Promise<ConnectProxy> => {
      const p = await startConnectProxy(options);
      proxies.push(p);
      return p;
    };
    after(async () => {
      await Promise.all(proxies.map((p) => p.close()));
    });
    const port = (): string => new URL(clusterAddress().server).port;
    const adminUser = async (): Promise<Record<string, unknown>> => ({
      'client-certificate-data': await base64('admin.crt'),
      'client-key-data': await base64('admin.key'),
    });

    it('goes through the cluster’s proxy-url, even to a loopback address; skips TLS checks when told', async () => {
      const p = await proxy({});
      const path = await single(
        join(work, 'proxy-url', 'config'),
        'proxied',
        { server: clusterAddress().server, 'proxy-url': p.url, 'insecure-skip-tls-verify': true },
        await adminUser(),
      );
      await reconciles(operatorIn(path), 'proxy-url');
      assert.ok(p.tunnels.length >= 1, 'tunnels opened');
      assert.deepEqual(new Set(p.tunnels), new Set([`127.0.0.1:${port()}`]));
    });

    it('goes through an https proxy, checked against the cluster’s CA as client-go does', async () => {
      const p = await proxy({
        tls: {
          cert: await readFile(join(clusterDir(), 'apiserver.crt')),
          key: await readFile(join(clusterDir(), 'apiserver.key')),
        },
      });
      const path = await single(
        join(work, 'https-proxy', 'config'),
        'proxied',
        {
          server: clusterAddress().server,
          'proxy-url': p.url,
          'certificate-authority-data': await base64('ca.crt'),
        },
        await adminUser(),
      );
      await reconciles(operatorIn(path), 'https-proxy');
      assert.deepEqual(new Set(p.tunnels), new Set([`127.0.0.1:${port()}`]));
    });

    it('goes through HTTPS_PROXY to a name only the proxy resolves, checking tls-server-name', async () => {
      const host = 'kube-apiserver.proxy.test';
      const p = await proxy({ addresses: { [host]: '127.0.0.1' } });
      const path = await single(
        join(work, 'https-proxy-env', 'config'),
        'behind-proxy',
        {
          server: `https://${host}:${port()}`,
          'certificate-authority-data': await base64('ca.crt'),
          // The serving certificate names `kubernetes`, not the name the proxy knows it by.
          'tls-server-name': 'kubernetes',
        },
        await adminUser(),
      );
      const env = { HTTPS_PROXY: p.url, NO_PROXY: '10.0.0.0/8,.example.com,kube-apiserver' };
      await reconciles(operatorIn(path, env), 'https-proxy-env');
      assert.ok(p.tunnels.length >= 1, 'tunnels opened');
      assert.deepEqual(new Set(p.tunnels), new Set([`${host}:${port()}`]));
    });

    it('connects directly to a host NO_PROXY names', async () => {
      const host = 'kube-apiserver.proxy.test';
      const p = await proxy({ addresses: { [host]: '127.0.0.1' } });
      const path = await single(
        join(work, 'no-proxy', 'config'),
        'not-proxied',
        {
          server: `https://${host}:${port()}`,
          'certificate-authority-data': await base64('ca.crt'),
        },
        await adminUser(),
      );
      const op = operatorIn(path, { HTTPS_PROXY: p.url, NO_PROXY: '.proxy.test' });
      try {
        await whileRunning(op, logsPort(op));
        // Only the proxy knows the name: a direct attempt is all that fails this way.
        await whileRunning(
          op,
          eventually('a direct attempt to the unresolvable name', () =>
            Promise.resolve(
              new RegExp(
                `waiting: cannot reach the API server at https://${host.replaceAll('.', '\\.')}:\\d+: .*(ENOTFOUND|EAI_AGAIN)`,
              ).test(op.output())
                ? true
                : undefined,
            ),
          ),
        );
        assert.deepEqual(p.tunnels, [], 'no tunnel asked for');
      } finally {
        op.child.kill('SIGTERM');
      }
      assert.equal(await op.exited, 0);
    });
  });

  describe('impersonation', () => {
    /** The audit events of requests made as `username` through impersonation. */
    const impersonated = (username: string): Promise<AuditEvent[]> =>
      auditEvents(admin, `"impersonatedUser":{"username":"${username}"`);

    /** A namespace where `group` may do all the operator does but write Deployments. */
    const readersNamespace = async (t: TestContext, group: string): Promise<TestNamespace> => {
      const space = await testNamespace(t, admin, 'impersonation');
      const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${space.name}`;
      await admin.request({
        method: 'POST',
        path: `${rbac}/roles`,
        body: {
          metadata: { name: 'readers' },
          rules: OPERATOR_RULES.map((rule) =>
            rule.resources.includes('deployments')
              ? { ...rule, verbs: ['get', 'list', 'watch'] }
              : rule,
          ),
        },
      });
      await admin.request({
        method: 'POST',
        path: `${rbac}/rolebindings`,
        body: {
          metadata: { name: 'readers' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'readers' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: group }],
        },
      });
      return space;
    };

    /** A kubeconfig of the admin (who may impersonate anyone), acting as `as`. */
    const actingAs = async (name: string, as: Record<string, unknown>): Promise<string> =>
      single(
        join(work, name, 'config'),
        name,
        { server: clusterAddress().server, 'certificate-authority-data': await base64('ca.crt') },
        {
          'client-certificate-data': await base64('admin.crt'),
          'client-key-data': await base64('admin.key'),
          ...as,
        },
      );

    it('acts as the user, uid, group and extras it names: the API server authorizes and audits them', async (t) => {
      const group = `echo-readers-${String(Date.now())}`;
      const space = await readersNamespace(t, group);
      const user = `echo-impersonated-${space.name}`;
      const path = await actingAs('impersonation', {
        as: user,
        'as-uid': 'uid-1234',
        'as-groups': [group],
        'as-user-extra': { 'reason.example.com/ticket': ['ECHO-42'] },
      });
      const p = startMain([`--kubeconfig=${path}`, `--namespaces=${space.name}`]);
      try {
        const port = await whileRunning(p, whenReady(p));
        await admin.request({
          method: 'POST',
          path: `/apis/example.com/v1/namespaces/${space.name}/echoes`,
          body: echoManifest({ name: 'denied', replicas: 1 }),
        });
        // The group may read, not write Deployments: the apply is refused for the impersonated user.
        await whileRunning(
          p,
          eventually('a Deployment apply refused with 403', async () =>
            (await scrape(port)).value('echo_operator_kubernetes_requests_total', {
              verb: 'apply',
              resource: 'deployments.apps',
              code: '403',
            }) >= 1
              ? true
              : undefined,
          ),
        );
        const events = await impersonated(user);
        assert.ok(
          events.some((e) => e.verb === 'watch'),
          'the watches ran as the impersonated user',
        );
        for (const { impersonatedUser: as } of events) {
          assert.ok(as, 'an impersonated request');
          assert.ok(as.groups?.includes(group), JSON.stringify(as));
          assert.equal(as.uid, 'uid-1234');
          assert.deepEqual(as.extra, { 'reason.example.com/ticket': ['ECHO-42'] });
        }
      } finally {
        p.child.kill('SIGTERM');
      }
      assert.equal(await p.exited, 0);
    });

    it('sends each group in a header of its own: rights from the second group count', async (t) => {
      const group = `echo-readers-${String(Date.now())}`;
      const space = await readersNamespace(t, group);
      const user = `echo-two-groups-${space.name}`;
      const path = await actingAs('two-groups', { as: user, 'as-groups': ['echo-nobody', group] });
      const p = startMain([`--kubeconfig=${path}`, `--namespaces=${space.name}`]);
      try {
        // Ready means its lists and watches were allowed, which only the second group is.
        await whileRunning(p, whenReady(p));
        const [event] = await impersonated(user);
        assert.deepEqual(
          new Set(event?.impersonatedUser?.groups),
          new Set(['echo-nobody', group, 'system:authenticated']),
        );
      } finally {
        p.child.kill('SIGTERM');
      }
      assert.equal(await p.exited, 0);
    });
  });
});
