// A real Kubernetes control plane on loopback: etcd, kube-apiserver (TLS, RBAC, PodSecurity),
// kube-controller-manager, kube-scheduler and kwok playing the kubelets of fake Nodes. Binaries
// come from hack/tools/build.sh. Ports are picked at runtime, so clusters can run side by side.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { KubeClient } from '../../src/kube/client.ts';
import { isNotFound } from '../../src/kube/errors.ts';
import { createPki, type Pki } from './pki.ts';
import {
  freePorts,
  isRunning,
  startProcess,
  stopProcess,
  tail,
  type RunningProcess,
} from './process.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ClusterOptions {
  /** Where certificates, data and logs go; a new temporary directory by default. */
  dir?: string;
  /** Keep the processes running after this Node process exits (`make cluster-up`). */
  detached?: boolean;
  /** Record every API request in `<dir>/audit.log` (JSON lines, one per request). */
  auditLog?: boolean;
  /** Fake Nodes served by kwok. */
  nodes?: number;
  /**
   * The Kubernetes release of kube-apiserver, kube-controller-manager, kube-scheduler and kubectl,
   * e.g. `v1.33.13`: the default version's or one of `KUBERNETES_COMPAT_VERSIONS` in
   * hack/tools/versions.env (built by hack/tools/build.sh). By default `$ECHO_KUBERNETES_VERSION`,
   * else the default version (`KUBERNETES_VERSION`). etcd and kwok are the same for every release.
   */
  kubernetesVersion?: string;
  /**
   * kube-apiserver's feature gate `ShardedListAndWatch` (KEP-5866: the `shardSelector` of lists and
   * watches, alpha from 1.36). By default `$ECHO_SHARDED_LIST_AND_WATCH` (`true` or `false`), else
   * on where the release knows the gate and left out where it does not: kube-apiserver refuses to
   * start on a gate it does not know. `false` tests a client's fallback for a server that ignores
   * `shardSelector`; `true` on a release before 1.36 throws.
   */
  shardedListAndWatch?: boolean;
  /** Extra kube-apiserver flags, after the launcher's own (a later flag wins). */
  apiserverArgs?: string[];
  /**
   * Runs once the API server is ready, before the controller-manager starts. A CRD installed here
   * is watched by the garbage collector from its start; one installed later only from its next
   * discovery of resource types, up to 30 s on, so an owner deleted before that keeps its
   * dependents until then.
   */
  beforeControllers?: (admin: KubeClient) => Promise<void>;
  log?: (message: string) => void;
}

/** What is written to `<dir>/cluster.json`, enough for another process to use or stop the cluster. */
export interface ClusterState {
  dir: string;
  server: string;
  /** etcd's client URL: tests compact it, through its JSON gateway, to expire watches. */
  etcdUrl: string;
  kubeconfig: string;
  auditLog: string | undefined;
  processes: {
    name: string;
    pid: number;
    command: string;
    args: string[];
    logFile: string;
    detached: boolean;
  }[];
}

export class LocalCluster {
  readonly state: ClusterState;

  private constructor(state: ClusterState) {
    this.state = state;
  }

  get kubeconfig(): string {
    return this.state.kubeconfig;
  }

  /** Starts a cluster and waits until a Node is Ready and the controllers are serving. */
  static async start(options: ClusterOptions = {}): Promise<LocalCluster> {
    await reapStaleClusters();
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), TMP_PREFIX)));
    // Options refused (no such release, a gate it does not know) leave the directory untouched.
    const launch = new Launch(dir, options, await freePorts(5));
    // The launcher owns its directory: whatever an earlier, crashed run left there goes.
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'logs'), { recursive: true });
    const cluster = new LocalCluster(launch.state);
    try {
      await launch.run();
      return cluster;
    } catch (err) {
      await cluster.stop().catch(() => undefined);
      throw err;
    }
  }

  /** Attaches to a cluster started by another process (for `cluster-down` and `cluster status`). */
  static async attach(dir: string): Promise<LocalCluster> {
    const state = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as ClusterState;
    return new LocalCluster(state);
  }

  /** Stops every process (newest first), then removes the directory; safe to call twice. */
  async stop(): Promise<void> {
    for (const p of [...this.state.processes].reverse()) await stopProcess(p.pid, p.command);
    this.state.processes = [];
    await rm(this.state.dir, { recursive: true, force: true });
  }

  /**
   * Stops one component and starts it again with the same flags, waiting for the API server to
   * be ready again: how tests cut every watch at once.
   */
  async restart(name: string): Promise<void> {
    const entry = this.state.processes.find((p) => p.name === name);
    if (!entry) throw new Error(`no process named ${name}`);
    await stopProcess(entry.pid, entry.command);
    const p = startProcess({ ...entry, name });
    entry.pid = p.pid;
    await writeFile(join(this.state.dir, 'cluster.json'), JSON.stringify(this.state, null, 2));
    const admin = KubeClient.fromFile(this.state.kubeconfig);
    try {
      await waitFor(name, p, async () => (await admin.text({ path: '/readyz' })) === 'ok', 120_000);
    } finally {
      await admin.close();
    }
  }

  isRunning(): boolean {
    return (
      this.state.processes.length > 0 &&
      this.state.processes.every((p) => isRunning(p.pid, p.command))
    );
  }

  /** The certificate authority, for kubeconfigs of other identities. */
  get caCert(): string {
    return join(this.state.dir, 'ca.crt');
  }

  /** The admin client certificate (group system:masters). */
  get adminCert(): { cert: string; key: string } {
    return { cert: join(this.state.dir, 'admin.crt'), key: join(this.state.dir, 'admin.key') };
  }
}

const TMP_PREFIX = 'echo-cluster-';

/**
 * Removes temporary clusters whose processes are all gone: what a test run killed with SIGKILL
 * leaves behind (its processes die with it, through the parent-death signal, but not its files).
 */
async function reapStaleClusters(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => []);
  for (const entry of entries.filter((e) => e.startsWith(TMP_PREFIX))) {
    const dir = join(tmpdir(), entry);
    try {
      const state = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as ClusterState;
      if (state.processes.some((p) => isRunning(p.pid, p.command))) continue;
    } catch {
      // No state yet: a cluster may be starting right now, unless the directory is old.
      const age = Date.now() - (await stat(dir)).mtimeMs;
      if (age < 10 * 60_000) continue;
    }
    await rm(dir, { recursive: true, force: true });
  }
}

let binDir: string | undefined;

/** The kubeconfigs of the components that talk to the API server, one identity each. */
interface ComponentKubeconfigs {
  controllerManager: string;
  scheduler: string;
  kwok: string;
}

/** One cluster start: its ports and state, and each component started in order. */
class Launch {
  readonly state: ClusterState;
  private readonly options: ClusterOptions;
  private readonly bin = toolsBinDir();
  private readonly kubeBin: string;
  private readonly featureGates: string[];
  private readonly started = Date.now();
  private readonly ports: { etcdPeer: number; controllerManager: number; scheduler: number };

  constructor(dir: string, options: ClusterOptions, ports: number[]) {
    const [etcdClient, etcdPeer, apiserver, controllerManager, scheduler] = ports as [
      number,
      number,
      number,
      number,
      number,
    ];
    this.options = options;
    const version = options.kubernetesVersion ?? process.env.ECHO_KUBERNETES_VERSION;
    this.kubeBin = kubernetesBinDir(version);
    this.featureGates = apiserverFeatureGates(
      version ?? defaultKubernetesVersion(),
      options.shardedListAndWatch ?? envBoolean('ECHO_SHARDED_LIST_AND_WATCH'),
    );
    this.ports = { etcdPeer, controllerManager, scheduler };
    this.state = {
      dir,
      server: `https://127.0.0.1:${String(apiserver)}`,
      etcdUrl: `http://127.0.0.1:${String(etcdClient)}`,
      kubeconfig: join(dir, 'kubeconfig'),
      auditLog: options.auditLog ? join(dir, 'audit.log') : undefined,
      processes: [],
    };
  }

  async run(): Promise<void> {
    const { dir, server, kubeconfig } = this.state;
    const pki = await createPki(dir);
    await this.startEtcd();
    const apiserver = await this.spawn('kube-apiserver', await this.apiserverArgs(pki));
    await writeKubeconfig(kubeconfig, server, pki.caCert, pki.client('admin'));
    const componentKubeconfig = async (name: string): Promise<string> => {
      const path = join(dir, `${name}.kubeconfig`);
      await writeKubeconfig(path, server, pki.caCert, pki.client(name));
      return path;
    };
    const [controllerManager, scheduler, kwok] = await Promise.all([
      componentKubeconfig('kube-controller-manager'),
      componentKubeconfig('kube-scheduler'),
      componentKubeconfig('kwok'),
    ]);
    const admin = KubeClient.fromFile(kubeconfig);
    try {
      await waitFor(
        'kube-apiserver',
        apiserver,
        async () => (await admin.text({ path: '/readyz' })) === 'ok',
        120_000,
      );
      this.log(`kube-apiserver ready at ${server}`);
      await this.options.beforeControllers?.(admin);
      await this.startControllers(pki, { controllerManager, scheduler, kwok }, admin);
    } finally {
      await admin.close();
    }
    // Ports repeat across clusters, and kubectl keys its discovery cache by host:port: a cache
    // per cluster keeps kubectl from trusting what an earlier cluster on the same port served.
    await writeFile(
      join(dir, 'env'),
      `export KUBECONFIG=${kubeconfig}\nexport KUBECACHEDIR=${join(dir, 'kube-cache')}\nexport PATH=${this.kubeBin === this.bin ? '' : `${this.kubeBin}:`}${this.bin}:$PATH\n`,
    );
  }

  private log(message: string): void {
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    this.options.log?.(`${message} (${seconds}s)`);
  }

  /** Starts a tool and records it in `<dir>/cluster.json` at once, so a run killed half-way can
   * still be cleaned up by pid. */
  private async spawn(name: string, args: string[]): Promise<RunningProcess> {
    const detached = this.options.detached ?? false;
    const p = startProcess({
      name,
      command: join(name.startsWith('kube-') ? this.kubeBin : this.bin, name),
      args,
      logFile: join(this.state.dir, 'logs', `${name}.log`),
      detached,
    });
    this.state.processes.push({
      name,
      pid: p.pid,
      command: p.command,
      args,
      logFile: p.logFile,
      detached,
    });
    await writeFile(join(this.state.dir, 'cluster.json'), JSON.stringify(this.state, null, 2));
    return p;
  }

  private async startEtcd(): Promise<void> {
    const { dir, etcdUrl } = this.state;
    const peerUrl = `http://127.0.0.1:${String(this.ports.etcdPeer)}`;
    const etcd = await this.spawn('etcd', [
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      // A throwaway test store: durability buys nothing and fsync dominates write latency.
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ]);
    await waitFor('etcd', etcd, async () => (await fetch(`${etcdUrl}/health`)).ok);
    this.log('etcd healthy');
  }

  private async apiserverArgs(pki: Pki): Promise<string[]> {
    const { dir, etcdUrl, server, auditLog } = this.state;
    const args = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${new URL(server).port}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${pki.servingCert}`,
      `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.caCert}`,
      '--authorization-mode=RBAC',
      // PodSecurity is on by default; named here so nobody switches it off by accident.
      // OwnerReferencesPermissionEnforcement is off by default but on in OpenShift and hardened
      // clusters: it refuses `blockOwnerDeletion` without `update` on the owner's finalizers.
      '--enable-admission-plugins=PodSecurity,NamespaceLifecycle,ServiceAccount,OwnerReferencesPermissionEnforcement',
      '--service-cluster-ip-range=10.0.0.0/24',
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      // The `kubernetes` Service would need a non-loopback address; nothing here uses it.
      '--endpoint-reconciler-type=none',
      '--advertise-address=127.0.0.1',
      '--profiling=false',
      ...this.featureGates,
    ];
    if (auditLog) {
      const policy = join(dir, 'audit-policy.yaml');
      await writeFile(policy, AUDIT_POLICY);
      args.push(
        `--audit-policy-file=${policy}`,
        `--audit-log-path=${auditLog}`,
        '--audit-log-format=json',
        '--audit-log-mode=blocking',
        // Never rotate: a size of 0 means lumberjack's default, 100 MB, and readers of the log
        // (the benchmark) would miss what was rotated away.
        '--audit-log-maxsize=1000000',
      );
    }
    return [...args, ...(this.options.apiserverArgs ?? [])];
  }

  /** The controller-manager, the scheduler and kwok, until a Node is Ready and each serves. */
  private async startControllers(
    pki: Pki,
    kubeconfigs: ComponentKubeconfigs,
    admin: KubeClient,
  ): Promise<void> {
    const controllerManager = await this.spawn('kube-controller-manager', [
      `--kubeconfig=${kubeconfigs.controllerManager}`,
      `--authentication-kubeconfig=${kubeconfigs.controllerManager}`,
      `--authorization-kubeconfig=${kubeconfigs.controllerManager}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${String(this.ports.controllerManager)}`,
      '--leader-elect=false',
      // One credential per controller, as in a real cluster, so the bootstrap RBAC roles apply.
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${pki.serviceAccountKey}`,
      `--root-ca-file=${pki.caCert}`,
      // The defaults (20 qps) throttle Pod creation long before the operator is the bottleneck.
      '--kube-api-qps=500',
      '--kube-api-burst=1000',
      '--concurrent-deployment-syncs=20',
      '--concurrent-replicaset-syncs=20',
      '--concurrent-gc-syncs=40',
    ]);
    const schedulerConfig = join(this.state.dir, 'kube-scheduler.yaml');
    await writeFile(schedulerConfig, schedulerConfiguration(kubeconfigs.scheduler));
    const scheduler = await this.spawn('kube-scheduler', [
      `--config=${schedulerConfig}`,
      `--authentication-kubeconfig=${kubeconfigs.scheduler}`,
      `--authorization-kubeconfig=${kubeconfigs.scheduler}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${String(this.ports.scheduler)}`,
    ]);
    const stages = join(this.bin, '..', 'kwok-stages');
    const kwok = await this.spawn('kwok', [
      `--kubeconfig=${kubeconfigs.kwok}`,
      '--manage-all-nodes=true',
      ...['node-initialize', 'node-heartbeat', 'pod-ready', 'pod-complete', 'pod-delete'].map(
        (s) => `--config=${join(stages, `${s}.yaml`)}`,
      ),
    ]);
    const nodes = this.options.nodes ?? 1;
    for (let i = 0; i < nodes; i++) await createFakeNode(admin, `kwok-node-${String(i)}`);
    await waitFor('kwok', kwok, async () => nodesReady(admin, nodes), 60_000);
    this.log('fake nodes Ready');
    // The default ServiceAccount appearing shows the controller-manager's controllers are running.
    await waitFor(
      'kube-controller-manager',
      controllerManager,
      async () => {
        await admin.request({ path: '/api/v1/namespaces/default/serviceaccounts/default' });
        return true;
      },
      60_000,
    );
    const healthz = `https://127.0.0.1:${String(this.ports.scheduler)}/healthz`;
    await waitFor(
      'kube-scheduler',
      scheduler,
      async () => (await fetchInsecure(healthz)) === 'ok',
      60_000,
    );
    this.log('controller-manager and scheduler running');
  }
}

/** Where hack/tools/build.sh put the binaries; asked once per process (kubectl runs are frequent). */
export function toolsBinDir(): string {
  if (binDir !== undefined) return binDir;
  const dir = execFileSync(join(repoRoot, 'hack/tools/build.sh'), ['--print-dir'], {
    encoding: 'utf8',
  }).trim();
  if (!existsSync(join(dir, 'kube-apiserver')) || !existsSync(join(dir, 'kwok'))) {
    throw new Error(
      `control plane binaries are missing from ${dir}: run "make setup" (or hack/tools/build.sh) first`,
    );
  }
  binDir = dir;
  return dir;
}

/**
 * Where the Kubernetes binaries of a release are: bin/ for the default version (or none given),
 * `<cache>/kubernetes-bin/<version>/` for another one that hack/tools/build.sh built.
 */
export function kubernetesBinDir(version: string | undefined): string {
  const bin = toolsBinDir();
  if (!version) return bin;
  const dir = join(bin, '..', 'kubernetes-bin', version);
  if (existsSync(join(dir, 'kube-apiserver'))) return dir;
  throw new Error(
    `no Kubernetes ${version} binaries in ${dir}: the versions built are KUBERNETES_VERSION and ` +
      `KUBERNETES_COMPAT_VERSIONS in hack/tools/versions.env (hack/tools/build.sh compat builds the latter)`,
  );
}

/** The first minor release whose kube-apiserver knows the `ShardedListAndWatch` gate. */
const SHARDED_LIST_AND_WATCH_SINCE = 36;

/**
 * kube-apiserver's `--feature-gates` for a release (`v1.36.3`): `ShardedListAndWatch` as asked, on
 * when not asked, and none for a release that does not know the gate.
 */
export function apiserverFeatureGates(
  kubernetesVersion: string,
  shardedListAndWatch: boolean | undefined,
): string[] {
  const minor = /^v?1\.(\d+)\./.exec(kubernetesVersion)?.[1];
  if (minor === undefined) throw new Error(`not a Kubernetes 1.x version: ${kubernetesVersion}`);
  if (Number(minor) < SHARDED_LIST_AND_WATCH_SINCE) {
    if (shardedListAndWatch === true) {
      throw new Error(
        `Kubernetes ${kubernetesVersion} has no ShardedListAndWatch feature gate: it came in 1.${String(SHARDED_LIST_AND_WATCH_SINCE)}`,
      );
    }
    return [];
  }
  return [`--feature-gates=ShardedListAndWatch=${String(shardedListAndWatch ?? true)}`];
}

/** `KUBERNETES_VERSION` of hack/tools/versions.env: the release in bin/. */
function defaultKubernetesVersion(): string {
  const env = readFileSync(join(repoRoot, 'hack/tools/versions.env'), 'utf8');
  const version = /^KUBERNETES_VERSION=(\S+)$/m.exec(env)?.[1];
  if (!version) throw new Error('hack/tools/versions.env sets no KUBERNETES_VERSION');
  return version;
}

/** An environment variable that is `true`, `false` or unset. */
function envBoolean(name: string): boolean | undefined {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new Error(`${name} must be true or false, not ${JSON.stringify(value)}`);
}

async function waitFor(
  name: string,
  proc: RunningProcess,
  probe: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'none';
  for (;;) {
    if (proc.exit) {
      throw new Error(
        `${name} exited (${JSON.stringify(proc.exit)}) while starting; its log ends:\n${tail(proc.logFile)}`,
      );
    }
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${name} not ready after ${String(timeoutMs / 1000)}s (last probe error: ${lastError}); its log ends:\n${tail(proc.logFile)}`,
      );
    }
    await sleep(200);
  }
}

export async function writeKubeconfig(
  path: string,
  server: string,
  caFile: string,
  user: { cert: string; key: string } | { token: string } | { tokenFile: string },
): Promise<void> {
  const userFields =
    'token' in user
      ? `    token: ${user.token}`
      : 'tokenFile' in user
        ? `    tokenFile: ${user.tokenFile}`
        : `    client-certificate: ${user.cert}\n    client-key: ${user.key}`;
  await writeFile(
    path,
    `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: ${server}
    certificate-authority: ${caFile}
users:
- name: user
  user:
${userFields}
contexts:
- name: local
  context: {cluster: local, user: user}
current-context: local
`,
    { mode: 0o600 },
  );
}

function schedulerConfiguration(kubeconfig: string): string {
  return `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: ${kubeconfig}
  qps: 500
  burst: 1000
leaderElection:
  leaderElect: false
`;
}

/** Metadata of every request, nothing of bodies: enough to count calls per identity and verb. */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`;

async function createFakeNode(client: KubeClient, name: string): Promise<void> {
  try {
    await client.request({ path: `/api/v1/nodes/${name}` });
    return;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  await client.request({
    method: 'POST',
    path: '/api/v1/nodes',
    body: {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
        labels: {
          type: 'kwok',
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
        },
      },
      // No NoSchedule taint: ordinary Deployments must land here. Room for benchmark-sized fleets.
      status: {
        allocatable: { cpu: '1000', memory: '4Ti', pods: '20000' },
        capacity: { cpu: '1000', memory: '4Ti', pods: '20000' },
      },
    },
  });
}

async function nodesReady(client: KubeClient, count: number): Promise<boolean> {
  interface NodeList {
    items: { status?: { conditions?: { type: string; status: string }[] } }[];
  }
  const list = await client.request<NodeList>({ path: '/api/v1/nodes' });
  const ready = list.items.filter((n) =>
    n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
  return ready.length >= count;
}

/** Health endpoints of the controller-manager and scheduler serve a self-signed certificate. */
async function fetchInsecure(url: string): Promise<string> {
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    const res = await request(url, { dispatcher });
    return await res.body.text();
  } finally {
    await dispatcher.close();
  }
}
