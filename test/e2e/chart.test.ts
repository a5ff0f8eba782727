// End to end through the Helm chart, on the local control plane: the API server accepts every
// rendered object (server-side dry run, every value set), `helm install` into a namespace that
// enforces the PodSecurity `restricted` profile gets the operator's pod admitted and Ready (kwok
// plays the kubelet), and the operator process, holding a token of the chart's ServiceAccount and
// the environment of the chart's Deployment, passes echo-operator-rs's scenarios through kubectl.
// So the chart's RBAC is exactly what the operator has: the audit log shows each rule in use, and a
// rule taken away shows up as refusals. Its /metrics is scraped as the chart's ServiceMonitor
// scrapes it: over TLS, with the token of a ServiceAccount bound to the chart's metrics-reader
// ClusterRole. Then `helm upgrade` and `helm uninstall`.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { execFileSync } from 'node:child_process';
import { toolsBinDir } from '../../hack/cluster/cluster.ts';
import type { Echo } from '../../src/echo/api.ts';
import { isNotFound } from '../../src/kube/errors.ts';
import { bucketOf } from '../../src/runtime/sharding/buckets.ts';
import { auditEvents } from '../support/audit.ts';
import { OPERATOR_RULES, foreignDeployment, isReady } from '../support/fixtures.ts';
import { echoManifest } from '../support/echo.ts';
import { createEchoes, fleetDifferences } from '../support/fleet.ts';
import { CHART, MONITORING_CRDS, adoptCrd, helm } from '../support/helm.ts';
import {
  eventually,
  kubectl,
  kubectlWithInput,
  serviceAccountKubeconfig,
} from '../support/kube.ts';
import {
  logsMetricsPort,
  startMain,
  whenReady,
  type OperatorProcess,
} from '../support/main-process.ts';
import { getMetrics, promtoolCheck, scrape, type MetricsTarget } from '../support/metrics.ts';
import { useNamespaces } from '../support/namespaces.ts';

const RELEASE = 'echo';
const FULLNAME = 'echo-echo-operator';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    generation?: number;
    uid?: string;
    ownerReferences?: { uid: string }[];
  };
  [key: string]: unknown;
}

interface Deployment extends K8sObject {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      spec: { containers: { env?: { name: string; value?: string }[]; args?: string[] }[] };
    };
  };
  status?: { readyReplicas?: number; observedGeneration?: number };
}

/** The environment a container is given as plain values (not those read from elsewhere). */
const containerEnv = (
  container: { env?: { name: string; value?: string }[] } | undefined,
): Record<string, string> =>
  Object.fromEntries(
    (container?.env ?? []).flatMap((e) => (e.value === undefined ? [] : [[e.name, e.value]])),
  );

const render = (...args: string[]): K8sObject[] =>
  parseAllDocuments(helm('template', RELEASE, CHART, ...args))
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);

describe('Helm chart, end to end', () => {
  const {
    admin,
    namespaces: [system, work],
  } = useNamespaces([
    {
      prefix: 'echo-system',
      labels: {
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
      },
    },
    'echo-e2e',
  ]);

  before(() => {
    for (const file of readdirSync(MONITORING_CRDS))
      kubectl('apply', '--server-side', '-f', join(MONITORING_CRDS, file));
    kubectl('wait', '--for=condition=Established', 'crd/servicemonitors.monitoring.coreos.com');
    kubectl('wait', '--for=condition=Established', 'crd/prometheusrules.monitoring.coreos.com');
  });

  /** The operator's own Deployment, as the chart installed it. */
  const operatorDeployment = (): Deployment =>
    JSON.parse(
      kubectl('get', 'deployment', FULLNAME, '-n', system.name, '-o', 'json'),
    ) as Deployment;

  it('renders objects the API server accepts, with defaults and with every value set', () => {
    const all = join(CHART, 'tests/values/all.yaml');
    for (const args of [
      [],
      ['--values', all, '--set', `operator.watchNamespaces={${work.name},${system.name}}`],
    ]) {
      const manifest = helm('template', RELEASE, CHART, '--namespace', system.name, ...args);
      const out = kubectlWithInput(manifest, 'apply', '--dry-run=server', '-f', '-');
      assert.match(out, /deployment\.apps\/echo-echo-operator created \(server dry run\)/);
    }
    const kinds = render('--values', all).map((o) => o.kind);
    for (const kind of ['ServiceMonitor', 'PrometheusRule', 'NetworkPolicy', 'ConfigMap', 'Role'])
      assert.ok(kinds.includes(kind), `the all-values render has a ${kind}`);
  });

  it('grants the rules the other suites run the operator with', () => {
    const role = render().find((o) => o.kind === 'ClusterRole' && o.metadata.name === FULLNAME);
    assert.deepEqual(role?.rules, OPERATOR_RULES);
  });

  it('has alert rules promtool accepts', () => {
    const rule = render('--set', 'metrics.prometheusRule.enabled=true').find(
      (o) => o.kind === 'PrometheusRule',
    );
    assert.ok(rule);
    const groups = JSON.stringify({ groups: (rule.spec as { groups: unknown }).groups });
    execFileSync(join(toolsBinDir(), 'promtool'), ['check', 'rules'], {
      input: groups,
      stdio: 'pipe',
    });
  });

  it('installs two replicas into a restricted namespace; the pods are admitted and Ready', () => {
    // The test kit applied the CRD before any test: the release takes it over, as a user's would.
    adoptCrd(RELEASE, system.name);
    helm(
      'install',
      RELEASE,
      CHART,
      '--namespace',
      system.name,
      '--set',
      'metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true',
      // Two replicas turn leader election on: the Lease rules are then in use below.
      '--set',
      'replicaCount=2',
      '--set',
      'metrics.dashboard.enabled=true',
      '--wait',
      '--timeout=120s',
    );
    const deployment = operatorDeployment();
    assert.equal(deployment.status?.readyReplicas, 2);
    const pods = kubectl('get', 'pods', '-n', system.name, '-o', 'name');
    assert.match(pods, /^pod\/echo-echo-operator-/m, 'PodSecurity admitted the pods');
    assert.match(
      kubectl('get', 'poddisruptionbudget', FULLNAME, '-n', system.name, '-o', 'name'),
      /poddisruptionbudget/,
    );
  });

  describe('the operator with the chart’s identity and settings', () => {
    let operator: OperatorProcess;
    let standby: OperatorProcess;
    let port: number;
    let metricsPort: number;
    let serviceAccount: string;
    /** Tokens of a ServiceAccount bound to the chart's metrics-reader ClusterRole, and of one not. */
    let readerToken: string;
    let strangerToken: string;
    /** The leader's /metrics as the ServiceMonitor scrapes it, with the reader's token. */
    const secureMetrics = (
      at = metricsPort,
      token: string | undefined = readerToken,
    ): MetricsTarget => ({
      port: at,
      secure: true,
      ...(token ? { token } : {}),
    });
    const readerBinding = `${system.name}-prometheus-metrics-reader`;
    const echoPath = (name = ''): string =>
      `/apis/example.com/v1/namespaces/${work.name}/echoes${name ? `/${name}` : ''}`;
    const deploymentPath = (name: string): string =>
      `/apis/apps/v1/namespaces/${work.name}/deployments/${name}`;
    const getEcho = (name: string): Promise<Echo> => admin.request<Echo>({ path: echoPath(name) });
    const getDeployment = (name: string): Promise<Deployment> =>
      admin.request<Deployment>({ path: deploymentPath(name) });
    const deploymentHas = (name: string, replicas: number): Promise<Deployment> =>
      eventually(`Deployment ${name} with ${String(replicas)} replicas`, async () => {
        const d = await getDeployment(name);
        return d.spec.replicas === replicas ? d : undefined;
      });
    const echoReady = (name: string, replicas: number): Promise<Echo> =>
      eventually(`Echo ${name} Ready with ${String(replicas)}`, async () => {
        const e = await getEcho(name);
        return isReady(e, replicas) ? e : undefined;
      });

    before(async () => {
      // The environment the chart gives the container, with the pod name the downward API would.
      const deployment = operatorDeployment();
      const env = containerEnv(deployment.spec.template.spec.containers[0]);
      assert.equal(env.ECHO_OPERATOR_LOG_FORMAT, 'json');
      serviceAccount = `system:serviceaccount:${system.name}:${FULLNAME}`;
      const kubeconfig = await serviceAccountKubeconfig(admin, system.name, FULLNAME);
      assert.equal(env.ECHO_OPERATOR_LEADER_ELECT, 'true');
      assert.equal(env.ECHO_OPERATOR_METRICS_SECURE, 'true');
      // Prometheus's ServiceAccount as a platform binds it, and one nobody bound.
      for (const name of ['prometheus', 'stranger'])
        kubectl('create', 'serviceaccount', name, '-n', system.name);
      kubectl(
        'create',
        'clusterrolebinding',
        readerBinding,
        `--clusterrole=${FULLNAME}-metrics-reader`,
        `--serviceaccount=${system.name}:prometheus`,
      );
      readerToken = kubectl('create', 'token', 'prometheus', '-n', system.name).trim();
      strangerToken = kubectl('create', 'token', 'stranger', '-n', system.name).trim();
      // Free ports for the health endpoints and /metrics: two replicas share this host.
      const replica = (name: string): OperatorProcess =>
        startMain([`--kubeconfig=${kubeconfig}`, '--port=0', '--metrics-port=0'], {
          ...env,
          POD_NAME: name,
        });
      operator = replica('echo-echo-operator-e2e-a');
      port = await whenReady(operator);
      metricsPort = await logsMetricsPort(operator);
      await eventually('the first replica to lead', async () =>
        (await scrape(secureMetrics())).value('leader_election_master_status', {
          name: FULLNAME,
        }) === 1
          ? true
          : undefined,
      );
      standby = replica('echo-echo-operator-e2e-b');
      await whenReady(standby);
      const standbyMetrics = secureMetrics(await logsMetricsPort(standby));
      assert.equal(
        (await scrape(standbyMetrics)).value('leader_election_master_status', { name: FULLNAME }),
        0,
      );
    });

    after(async () => {
      for (const p of [standby, operator]) {
        p.child.kill('SIGTERM');
        assert.equal(await p.exited, 0, p.output());
      }
      kubectl('delete', 'clusterrolebinding', readerBinding);
    });

    it('serves /metrics as the ServiceMonitor scrapes it: TLS, and a token allowed get on /metrics', async () => {
      const monitor = render('--set', 'metrics.serviceMonitor.enabled=true').find(
        (o) => o.kind === 'ServiceMonitor',
      );
      const [endpoint] = (monitor?.spec as { endpoints: Record<string, unknown>[] }).endpoints;
      assert.deepEqual(
        {
          scheme: endpoint?.scheme,
          path: endpoint?.path,
          bearerTokenFile: endpoint?.bearerTokenFile,
          tlsConfig: endpoint?.tlsConfig,
        },
        {
          scheme: 'https',
          path: '/metrics',
          bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
          tlsConfig: { insecureSkipVerify: true },
        },
      );
      const scraped = await getMetrics(secureMetrics());
      assert.equal(scraped.status, 200, scraped.body);
      promtoolCheck(scraped.body);
      assert.ok((await scrape(secureMetrics())).samples.length > 100);
      assert.equal((await getMetrics(secureMetrics(metricsPort, ''))).status, 401, 'no token');
      const stranger = await getMetrics(secureMetrics(metricsPort, strangerToken));
      assert.equal(stranger.status, 403, stranger.body);
      assert.equal((await getMetrics(port)).status, 404, 'the probes’ port has no /metrics');
      assert.equal((await fetch(`http://127.0.0.1:${String(port)}/readyz`)).status, 200);
    });

    it('creates the Deployment of a new Echo and reports Ready, as kubectl shows', async () => {
      kubectlWithInput(
        JSON.stringify(echoManifest({ name: 'hello', replicas: 2 })),
        'apply',
        '-n',
        work.name,
        '-f',
        '-',
      );
      await deploymentHas('hello', 2);
      await echoReady('hello', 2);
      const table = kubectl('get', 'echo', 'hello', '-n', work.name);
      assert.match(table, /^NAME\s+READY\s+REPLICAS\s+READY REPLICAS\s+AGE$/m);
      assert.match(table, /^hello\s+True\s+2\s+2\s+\S+$/m);
      const described = kubectl('describe', 'echo', 'hello', '-n', work.name);
      assert.match(described, /Reason:\s+ReplicasReady/);
    });

    it('recreates a deleted Deployment', async () => {
      const old = await getDeployment('hello');
      kubectl('delete', 'deployment', 'hello', '-n', work.name, '--wait=true');
      await eventually('a new Deployment', async () => {
        const d = await getDeployment('hello').catch((e: unknown) => {
          if (isNotFound(e)) return undefined;
          throw e;
        });
        return d && d.metadata.uid !== old.metadata.uid ? d : undefined;
      });
    });

    it('reverts a Deployment edited by hand', async () => {
      kubectl('scale', 'deployment', 'hello', '--replicas=5', '-n', work.name);
      await deploymentHas('hello', 2);
      await eventually('the Event in kubectl describe', () => {
        const described = kubectl('describe', 'echo', 'hello', '-n', work.name);
        return Promise.resolve(
          /Normal\s+DeploymentReverted\s+.*spec\.replicas was changed by someone else/.test(
            described,
          )
            ? true
            : undefined,
        );
      });
    });

    it('follows a change of the Echo, and kubectl scale echo', async () => {
      kubectl(
        'patch',
        'echo',
        'hello',
        '-n',
        work.name,
        '--type=merge',
        '-p',
        '{"spec":{"replicas":3}}',
      );
      await deploymentHas('hello', 3);
      await echoReady('hello', 3);
      kubectl('scale', 'echo', 'hello', '--replicas=1', '-n', work.name);
      await deploymentHas('hello', 1);
      await echoReady('hello', 1);
    });

    it('leaves alone a Deployment it does not control, and takes the name once it is gone', async () => {
      await admin.request({
        method: 'POST',
        path: `/apis/apps/v1/namespaces/${work.name}/deployments`,
        body: foreignDeployment('adopted', { app: 'legacy' }),
      });
      const theirs = await getDeployment('adopted');
      kubectlWithInput(
        JSON.stringify(echoManifest({ name: 'adopted', replicas: 2 })),
        'apply',
        '-n',
        work.name,
        '-f',
        '-',
      );
      const ready = '{.status.conditions[?(@.type=="Ready")].reason}';
      await eventually('the Echo to say the name is taken', () =>
        Promise.resolve(
          kubectl('get', 'echo', 'adopted', '-n', work.name, '-o', `jsonpath=${ready}`) ===
            'DeploymentNameTaken'
            ? true
            : undefined,
        ),
      );
      const untouched = await getDeployment('adopted');
      assert.equal(untouched.metadata.uid, theirs.metadata.uid, 'not deleted');
      assert.equal(untouched.metadata.generation, theirs.metadata.generation, 'not changed');
      kubectl('delete', 'deployment', 'adopted', '-n', work.name, '--wait=true');
      const ours = await deploymentHas('adopted', 2);
      assert.notEqual(ours.metadata.uid, theirs.metadata.uid);
      await echoReady('adopted', 2);
    });

    it('adopts an orphan labelled as its own, and re-creates it when its selector differs', async () => {
      const hand = foreignDeployment('relabelled', { app: 'legacy' }) as { metadata: object };
      const orphan = await admin.request<Deployment>({
        method: 'POST',
        path: `/apis/apps/v1/namespaces/${work.name}/deployments`,
        body: {
          ...hand,
          metadata: {
            ...hand.metadata,
            labels: { 'app.kubernetes.io/managed-by': 'echo-operator' },
          },
        },
      });
      kubectlWithInput(
        JSON.stringify(echoManifest({ name: 'relabelled', replicas: 1 })),
        'apply',
        '-n',
        work.name,
        '-f',
        '-',
      );
      const echo = await echoReady('relabelled', 1);
      const ours = await getDeployment('relabelled');
      assert.notEqual(ours.metadata.uid, orphan.metadata.uid, 'deleted and created again');
      assert.equal(ours.metadata.ownerReferences?.[0]?.uid, echo.metadata.uid);
    });

    it('lets the garbage collector remove the Deployment of a deleted Echo', async () => {
      kubectl('delete', 'echo', 'adopted', '-n', work.name);
      await eventually(
        'the Deployment to be collected',
        async () => {
          const gone = await getDeployment('adopted').then(
            () => false,
            (e: unknown) => isNotFound(e),
          );
          return gone ? true : undefined;
        },
        90_000,
      );
    });

    it('exports every series the chart’s alerts and dashboard query', async () => {
      const objects = render(
        '--set',
        'metrics.prometheusRule.enabled=true,metrics.dashboard.enabled=true',
      );
      const queries = [
        ...objects
          .filter((o) => o.kind === 'PrometheusRule')
          .flatMap((o) =>
            (o.spec as { groups: { rules: { expr: string }[] }[] }).groups.flatMap((g) =>
              g.rules.map((r) => r.expr),
            ),
          ),
        ...objects
          .filter((o) => o.kind === 'ConfigMap')
          .flatMap((o) => {
            const json = (o.data as Record<string, string>)['echo-operator.json'] ?? '{}';
            const dash = JSON.parse(json) as { panels: { targets: { expr: string }[] }[] };
            return dash.panels.flatMap((p) => p.targets.map((t) => t.expr));
          }),
      ];
      assert.ok(queries.length > 10);
      // Every selector in these queries is written `name{...}`; `up` comes from Prometheus itself.
      const names = new Set(
        queries.flatMap((q) => [...q.matchAll(/([a-z_:][a-z0-9_:]*)\{/g)].map((m) => m[1] ?? '')),
      );
      names.delete('up');
      const exported = new Set(
        (await scrape(secureMetrics())).samples.map((s) =>
          s.name.replace(/_(bucket|sum|count)$/, ''),
        ),
      );
      const missing = [...names].filter(
        (n) => !exported.has(n) && !exported.has(n.replace(/_bucket$/, '')),
      );
      assert.deepEqual(missing, [], 'series the chart queries but the operator does not export');
    });

    it('used every rule of its role, and was never refused', async () => {
      // Watching the whole cluster, the operator also meets other tests' objects (an Echo in a
      // namespace being deleted is refused with 403); what it did here is judged in this
      // test's namespace, from the audit log.
      const events = (await auditEvents(admin, serviceAccount)).filter(
        (e) => e.user.username === serviceAccount && e.objectRef,
      );
      const refused = events.filter(
        (e) =>
          [work.name, system.name].includes(e.objectRef?.namespace ?? '') &&
          e.responseStatus?.code === 403,
      );
      assert.deepEqual(refused, [], `no request in ${work.name} or ${system.name} was refused`);
      const used = new Set(
        events.map((e) => {
          const r = e.objectRef!;
          const resource = r.subresource ? `${r.resource}/${r.subresource}` : r.resource;
          return `${e.verb} ${r.apiGroup ?? ''}/${resource}`;
        }),
      );
      // Server-side apply is a patch in the audit log, and a create to RBAC when the object is new:
      // the next test shows that need by taking `create` away. `update` on echoes/finalizers is
      // no request: the OwnerReferencesPermissionEnforcement admission plugin, on in this cluster,
      // checks it for every apply setting blockOwnerDeletion, which none refused shows.
      // `list` is granted too, for an API server that refuses WatchList (the informers then list
      // page by page); this one serves it, so the informers start with a watch and list nothing.
      const granted = [
        'watch example.com/echoes',
        'patch example.com/echoes/status',
        'watch apps/deployments',
        'get apps/deployments',
        'patch apps/deployments',
        'delete apps/deployments',
        'create events.k8s.io/events',
        'get coordination.k8s.io/leases',
        // The leader looks for live sharded replicas of its group (docs/sharding.md).
        'list coordination.k8s.io/leases',
        'create coordination.k8s.io/leases',
        'update coordination.k8s.io/leases',
        // The metrics port's questions about the scrapers' tokens (metrics-auth ClusterRole).
        'create authentication.k8s.io/tokenreviews',
        'create authorization.k8s.io/subjectaccessreviews',
      ];
      assert.deepEqual(
        granted.filter((g) => !used.has(g)),
        [],
        `every granted verb was used; used: ${[...used].join(', ')}`,
      );
      // The leader's "became leader" Event about its Lease, in the release namespace.
      assert.ok(
        events.some(
          (e) =>
            e.verb === 'create' &&
            e.objectRef?.resource === 'events' &&
            e.objectRef.namespace === system.name &&
            e.responseStatus?.code === 201,
        ),
        `an Event recorded in ${system.name}`,
      );
    });

    it('cannot create a Deployment without the create verb', async () => {
      const role = `/apis/rbac.authorization.k8s.io/v1/clusterroles/${FULLNAME}`;
      const original = await admin.request<{ rules: { resources: string[]; verbs: string[] }[] }>({
        path: role,
      });
      const withoutCreate = original.rules.map((r) =>
        r.resources.includes('deployments')
          ? { ...r, verbs: r.verbs.filter((v) => v !== 'create') }
          : r,
      );
      await admin.request({
        method: 'PATCH',
        path: role,
        contentType: 'application/merge-patch+json',
        body: { rules: withoutCreate },
      });
      try {
        await admin.request({
          method: 'POST',
          path: echoPath(),
          body: echoManifest({ name: 'no-create', replicas: 1 }),
        });
        await eventually('the apply to be refused', async () => {
          const m = await scrape(secureMetrics());
          return m.value('echo_operator_kubernetes_requests_total', {
            verb: 'apply',
            resource: 'deployments.apps',
            code: '403',
          }) > 0
            ? true
            : undefined;
        });
      } finally {
        // The chart's rules again, as `helm upgrade` would restore them.
        helm('upgrade', RELEASE, CHART, '--namespace', system.name, '--reuse-values');
      }
      await deploymentHas('no-create', 1);
    });
  });

  it('rolls the Deployment on helm upgrade with changed values', () => {
    const before = operatorDeployment();
    helm(
      'upgrade',
      RELEASE,
      CHART,
      '--namespace',
      system.name,
      '--reuse-values',
      '--set',
      'operator.concurrency=8,operator.logFormat=text',
      '--wait',
      '--timeout=120s',
    );
    const after = operatorDeployment();
    assert.ok((after.metadata.generation ?? 0) > (before.metadata.generation ?? 0));
    const env = after.spec.template.spec.containers[0]?.env ?? [];
    assert.ok(env.some((e) => e.name === 'ECHO_OPERATOR_CONCURRENCY' && e.value === '8'));
    assert.ok(env.some((e) => e.name === 'ECHO_OPERATOR_LOG_FORMAT' && e.value === 'text'));
    assert.equal(after.status?.readyReplicas, 2);
  });

  it('leaves nothing behind on helm uninstall but the CRD', () => {
    helm('uninstall', RELEASE, '--namespace', system.name, '--wait', '--timeout=120s');
    const selector = `app.kubernetes.io/instance=${RELEASE}`;
    const namespaced = kubectl(
      'get',
      'deployments,services,serviceaccounts,configmaps,servicemonitors,prometheusrules,networkpolicies,roles,rolebindings,poddisruptionbudgets',
      '-n',
      system.name,
      '-l',
      selector,
      '-o',
      'name',
    );
    assert.equal(namespaced.trim(), '');
    const clusterWide = kubectl(
      'get',
      'clusterroles,clusterrolebindings',
      '-l',
      selector,
      '-o',
      'name',
    );
    assert.equal(clusterWide.trim(), '');
    // The release's own CRD, kept by its resource policy (and so every Echo and its Deployment).
    const crd = JSON.parse(kubectl('get', 'crd', 'echoes.example.com', '-o', 'json')) as K8sObject;
    assert.equal(
      (crd.metadata as { annotations?: Record<string, string> }).annotations?.[
        'meta.helm.sh/release-namespace'
      ],
      system.name,
    );
    assert.match(kubectl('get', 'echo', 'hello', '-n', work.name, '-o', 'name'), /echo/);
    assert.match(kubectl('get', 'deployment', 'hello', '-n', work.name, '-o', 'name'), /hello/);
  });
  describe('sharded: three replicas share the Echoes', () => {
    const BUCKETS = 8;
    const names = ['echo-echo-operator-s-a', 'echo-echo-operator-s-b', 'echo-echo-operator-s-c'];
    const replicas: OperatorProcess[] = [];
    const ports: number[] = [];
    const wanted = new Map(Array.from({ length: 12 }, (_, i) => [`sharded-${String(i)}`, 1]));
    const bucketHolders = (): Map<number, string> => {
      const leases = JSON.parse(
        kubectl(
          'get',
          'leases',
          '-n',
          system.name,
          '-l',
          `sharding.example.com/group=${FULLNAME},sharding.example.com/role=bucket`,
          '-o',
          'json',
        ),
      ) as {
        items: {
          metadata: { labels: Record<string, string> };
          spec: { holderIdentity?: string };
        }[];
      };
      return new Map(
        leases.items.map((l) => [
          Number(l.metadata.labels['sharding.example.com/bucket']),
          (l.spec.holderIdentity ?? '').split('_')[0] ?? '',
        ]),
      );
    };

    before(() => {
      // Kept by the uninstall above: the new release takes it over.
      adoptCrd(RELEASE, system.name);
      helm(
        'install',
        RELEASE,
        CHART,
        '--namespace',
        system.name,
        '--set',
        `replicaCount=3,sharding.enabled=true,sharding.buckets=${String(BUCKETS)}`,
        '--wait',
        '--timeout=120s',
      );
    });

    after(async () => {
      for (const p of replicas) p.child.kill('SIGTERM');
      for (const p of replicas) assert.equal(await p.exited, 0, p.output());
      helm('uninstall', RELEASE, '--namespace', system.name, '--wait', '--timeout=120s');
    });

    it('installs three Ready pods that run with --sharding', () => {
      const deployment = operatorDeployment();
      assert.equal(deployment.status?.readyReplicas, 3);
      assert.deepEqual(deployment.spec.template.spec.containers[0]?.args, [
        '--sharding=true',
        `--sharding-buckets=${String(BUCKETS)}`,
      ]);
    });

    it('gives each replica, run with the chart’s identity and settings, its share of the buckets', async () => {
      const container = operatorDeployment().spec.template.spec.containers[0];
      const env = containerEnv(container);
      const kubeconfig = await serviceAccountKubeconfig(admin, system.name, FULLNAME);
      for (const name of names) {
        // Plain /metrics on the probes' port: the secure port is covered above.
        const p = startMain(
          [`--kubeconfig=${kubeconfig}`, '--port=0', ...(container?.args ?? [])],
          {
            ...env,
            POD_NAME: name,
            ECHO_OPERATOR_METRICS_SECURE: '',
            ECHO_OPERATOR_METRICS_PORT: '',
            ECHO_OPERATOR_METRICS_CERT_DIR: '',
          },
        );
        replicas.push(p);
        ports.push(await whenReady(p));
      }
      const held = await eventually(
        'every bucket held, 2 or 3 per replica',
        async () => {
          const counts = await Promise.all(
            ports.map(async (p) => (await scrape(p)).value('echo_operator_sharding_buckets_held')),
          );
          const total = counts.reduce((a, b) => a + b, 0);
          return total === BUCKETS && counts.every((c) => c >= 2 && c <= 3) ? counts : undefined;
        },
        60_000,
      );
      assert.equal(held.length, 3);
      assert.deepEqual(new Set(bucketHolders().values()), new Set(names));
    });

    it('spreads Echoes across the replicas and converges one created after the install', async () => {
      await createEchoes(admin, work.name, wanted);
      // Only these Echoes: the namespace keeps what the tests above left (Deployments of none).
      await eventually(
        'the Echoes converged',
        async () => {
          const differences = await fleetDifferences(admin, work.name, wanted);
          return differences.some((d) => d.startsWith('sharded-')) ? undefined : true;
        },
        120_000,
      );
      const perReplica = await Promise.all(
        ports.map(async (p) =>
          (await scrape(p)).samples
            .filter((s) => s.name === 'echo_operator_sharding_bucket_objects')
            .reduce((n, s) => n + s.value, 0),
        ),
      );
      // Thirteen Echoes or more (`hello` and others are left from above) over eight buckets, 2 or
      // 3 per replica: one replica alone holds them all with a chance below 1e-5.
      assert.ok(
        perReplica.filter((n) => n > 0).length >= 2,
        `Echoes per replica: ${perReplica.join(', ')}`,
      );
      const holders = bucketHolders();
      const echoes = await admin.request<{ items: Echo[] }>({
        path: `/apis/example.com/v1/namespaces/${work.name}/echoes`,
      });
      assert.equal(
        perReplica.reduce((a, b) => a + b, 0),
        echoes.items.length,
      );
      for (const [i, p] of ports.entries()) {
        const own = echoes.items.filter(
          (e) => holders.get(bucketOf(e.metadata.uid, BUCKETS)) === names[i],
        ).length;
        const cached = (await scrape(p)).value('echo_operator_informer_objects', {
          informer: 'echoes',
        });
        assert.equal(cached, own, `${String(names[i])} caches the Echoes of its buckets`);
      }
    });
  });
});
