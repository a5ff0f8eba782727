// The container image, end to end without a container engine: hack/image/build.sh builds it, its
// --verify mode checks the configuration and contents and unpacks the root filesystem, and the
// operator then runs from that root filesystem against the local control plane, as a container
// runtime would start it: chroot as the image's user, the image's entrypoint and environment only,
// the kubeconfig and CA inside the root filesystem. It holds a ServiceAccount token with exactly
// the chart's rules, granted in one namespace. Needs root (chroot), as CI has.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chown, copyFile, mkdir, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { writeKubeconfig } from '../../hack/cluster/cluster.ts';
import type { Echo } from '../../src/echo/api.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { isReady } from '../support/fixtures.ts';
import { echoManifest } from '../support/echo.ts';
import { CHART, helm } from '../support/helm.ts';
import {
  adminClient,
  createNamespace,
  eventually,
  grantRole,
  serviceAccountKubeconfig,
  type PolicyRule,
} from '../support/kube.ts';
import { captured, whenReady, type OperatorProcess } from '../support/main-process.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const buildScript = join(repo, 'hack/image/build.sh');
const packageJson = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as {
  version: string;
  devDependencies: Record<string, string>;
};

interface ImageConfig {
  config: {
    User: string;
    Entrypoint: string[];
    Env: string[];
    WorkingDir: string;
    ExposedPorts: Record<string, object>;
  };
}

/** The image's configuration, read from its OCI layout: index, manifest, config blob. */
async function readImageConfig(layout: string): Promise<ImageConfig> {
  const blob = async <T>(digest: string): Promise<T> =>
    JSON.parse(await readFile(join(layout, 'blobs', ...digest.split(':')), 'utf8')) as T;
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  assert.equal(index.manifests.length, 1, 'the layout holds one image');
  const manifest = await blob<{ config: { digest: string } }>(index.manifests[0]!.digest);
  return blob<ImageConfig>(manifest.config.digest);
}

/** The rules the chart grants when it watches `namespace` only: its Role. */
function chartRules(namespace: string): PolicyRule[] {
  const role = parseAllDocuments(
    helm('template', 'echo', CHART, '--set', `operator.watchNamespaces={${namespace}}`),
  )
    .map((d) => d.toJS() as { kind?: string; rules?: PolicyRule[] } | null)
    .find((o) => o?.kind === 'Role');
  assert.ok(role?.rules, 'the chart renders a Role for a watched namespace');
  return role.rules;
}

/** Runs `command` in `rootfs` as a container runtime would: as `user`, with `env` only. */
function startInRootfs(
  rootfs: string,
  user: string,
  command: string[],
  env: Record<string, string>,
): OperatorProcess {
  return captured(
    spawn('chroot', [`--userspec=${user}`, rootfs, ...command], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    }),
  );
}

describe('container image', () => {
  let work: string;
  let layout: string;
  let archive: string;
  let rootfs: string;
  let image: ImageConfig;
  let admin: KubeClient;
  let namespace: Awaited<ReturnType<typeof createNamespace>> | undefined;
  let operator: OperatorProcess | undefined;

  before(
    async () => {
      admin = adminClient();
      work = await mkdtemp(join(tmpdir(), 'echo-image-test-'));
      const output = join(work, 'image');
      layout = join(output, 'oci');
      archive = join(output, `echo-operator-${packageJson.version}.tar`);
      rootfs = join(work, 'rootfs');
      const run = promisify(execFile);
      try {
        await run(buildScript, ['--output', output], { maxBuffer: 16 << 20 });
        await run(buildScript, ['--verify', '--output', output, '--rootfs', rootfs], {
          maxBuffer: 16 << 20,
        });
      } catch (err) {
        // The script's messages say what is wrong; execFile's error gives only the exit code.
        const { stderr } = err as { stderr?: string };
        throw new Error(`hack/image/build.sh failed:\n${stderr ?? ''}`, { cause: err });
      }
      image = await readImageConfig(layout);
    },
    { timeout: 15 * 60_000 },
  );

  after(async () => {
    if (operator?.child.exitCode === null) {
      operator.child.kill('SIGKILL');
      await operator.exited;
    }
    await namespace?.remove();
    await admin.close();
    await rm(work, { recursive: true, force: true });
  });

  it('is tagged in its docker archive as the image the chart deploys by default', async () => {
    const values = parse(await readFile(join(CHART, 'values.yaml'), 'utf8')) as {
      image: { repository: string };
    };
    const chart = parse(await readFile(join(CHART, 'Chart.yaml'), 'utf8')) as {
      appVersion: string;
    };
    const manifest = JSON.parse(
      execFileSync('tar', ['--extract', '--to-stdout', '--file', archive, 'manifest.json'], {
        encoding: 'utf8',
      }),
    ) as { RepoTags: string[] }[];
    assert.deepEqual(manifest[0]?.RepoTags, [`${values.image.repository}:${chart.appVersion}`]);
  });

  it("sets the chart's Node flags, as the Dockerfile does", async () => {
    const values = parse(await readFile(join(CHART, 'values.yaml'), 'utf8')) as {
      operator: { nodeOptions: string };
    };
    const dockerfile = await readFile(join(repo, 'Dockerfile'), 'utf8');
    assert.ok(image.config.Env.includes(`NODE_OPTIONS=${values.operator.nodeOptions}`));
    assert.equal(
      /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(dockerfile)?.[1],
      values.operator.nodeOptions,
    );
  });

  it('is what the Dockerfile describes: its Node, user, working directory, port and entrypoint', async () => {
    const dockerfile = await readFile(join(repo, 'Dockerfile'), 'utf8');
    const instruction = (name: string): string => {
      const match = new RegExp(`^${name}\\s+(.+)$`, 'm').exec(dockerfile);
      assert.ok(match?.[1], `the Dockerfile has ${name}`);
      return match[1];
    };
    assert.equal(
      /^ARG NODE_VERSION=(\S+)$/m.exec(dockerfile)?.[1],
      packageJson.devDependencies.node,
    );
    assert.equal(instruction('USER'), image.config.User);
    assert.equal(instruction('WORKDIR'), image.config.WorkingDir);
    assert.ok(`${instruction('EXPOSE')}/tcp` in image.config.ExposedPorts);
    // The node image keeps node in /usr/local/bin; a relative script is relative to WORKDIR.
    const [program, script] = JSON.parse(instruction('ENTRYPOINT')) as [string, string];
    assert.deepEqual(
      [posix.join('/usr/local/bin', program), posix.join(image.config.WorkingDir, script)],
      image.config.Entrypoint,
    );
  });

  it('runs the operator from its root filesystem: an Echo gets its Deployment, SIGTERM exits 0', async () => {
    namespace = await createNamespace(admin, 'echo-image');
    const ns = namespace.name;
    await grantRole(admin, ns, `${ns}/echo-operator`, chartRules(ns));
    const hostKubeconfig = parse(
      await readFile(await serviceAccountKubeconfig(admin, ns, 'echo-operator'), 'utf8'),
    ) as {
      clusters: { cluster: { server: string; 'certificate-authority': string } }[];
      users: { user: { token: string } }[];
    };
    const cluster = hostKubeconfig.clusters[0]!.cluster;
    // Paths as the operator sees them from inside its root filesystem.
    const dir = '/tmp/echo-image-test';
    await mkdir(join(rootfs, dir));
    await copyFile(cluster['certificate-authority'], join(rootfs, dir, 'ca.crt'));
    await writeKubeconfig(join(rootfs, dir, 'kubeconfig'), cluster.server, `${dir}/ca.crt`, {
      token: hostKubeconfig.users[0]!.user.token,
    });
    // The user's own, as the kubelet makes a pod's token with fsGroup; the kubeconfig is 0600.
    const [uid = NaN, gid = NaN] = image.config.User.split(':').map(Number);
    for (const file of ['ca.crt', 'kubeconfig']) await chown(join(rootfs, dir, file), uid, gid);

    const env = Object.fromEntries(
      image.config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
    );
    const p = startInRootfs(
      rootfs,
      image.config.User,
      [
        ...image.config.Entrypoint,
        `--kubeconfig=${dir}/kubeconfig`,
        `--namespaces=${ns}`,
        '--port=0',
        '--log-format=json',
      ],
      { ...env, POD_NAME: 'echo-operator-image-test' },
    );
    operator = p;
    const exitedEarly = p.exited.then((code) => {
      throw new Error(`the operator exited with ${String(code)}`);
    });
    await Promise.race([whenReady(p), exitedEarly]).catch((err: unknown) => {
      throw new Error(`the operator did not get ready; its output:\n${p.output()}`, { cause: err });
    });
    const pid = String(p.child.pid);
    assert.match(await readFile(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+1000\s+1000\s/m);
    assert.equal(await readlink(`/proc/${pid}/root`), rootfs);

    await admin.request({
      method: 'POST',
      path: `/apis/example.com/v1/namespaces/${ns}/echoes`,
      body: echoManifest({ name: 'hello', replicas: 2 }),
    });
    await eventually('the Deployment with 2 replicas', async () => {
      const d = await admin.request<{ spec: { replicas: number } }>({
        path: `/apis/apps/v1/namespaces/${ns}/deployments/hello`,
      });
      return d.spec.replicas === 2 ? d : undefined;
    });
    await eventually('the Echo Ready with 2', async () => {
      const echo = await admin.request<Echo>({
        path: `/apis/example.com/v1/namespaces/${ns}/echoes/hello`,
      });
      return isReady(echo, 2) ? echo : undefined;
    });

    p.child.kill('SIGTERM');
    assert.equal(await p.exited, 0, p.output());
  });
});
