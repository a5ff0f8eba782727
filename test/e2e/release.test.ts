// A release, end to end, as a user gets it: `hack/release/release.sh` (what `make release` runs)
// builds release 0.0.1 (the image, built and checked, its SBOM, the packaged chart, SHA256SUMS
// signed with a key made here), then 0.0.2: a chart-only release of the same image whose CRD has
// a new field (the test adds it to a copy of the chart, as a change of src/echo/crd.ts would).
// Both are pushed to an OCI registry served by crane on loopback and signed there with cosign.
// Then `helm install oci://…` 0.0.1 into the local control plane (kwok plays the kubelet, so the
// pods are admitted and Ready but run nothing), over the CRD the test kit made, handed to the
// release as docs/install.md says; `helm upgrade` to 0.0.2 updates the CRD and rolls the
// Deployment to the new tag, and the Echo made before is kept; `helm uninstall` keeps the CRD.
// Last, the umbrella chart (test/chart/umbrella) is installed with the chart as a subchart.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { toolsBinDir } from '../../hack/cluster/cluster.ts';
import { CRD_FILE } from '../../src/echo/crd.ts';
import { echoManifest } from '../support/echo.ts';
import { CHART, MONITORING_CRDS, adoptCrd, helm, helmEnv } from '../support/helm.ts';
import { eventually, kubectl, kubectlWithInput } from '../support/kube.ts';
import { useNamespaces } from '../support/namespaces.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const releaseScript = join(repo, 'hack/release/release.sh');
const cosign = join(toolsBinDir(), 'cosign');
const crane = join(toolsBinDir(), 'crane');
const PASSWORD = 'release-test';
const RELEASE = 'echo';
const FULLNAME = 'echo-echo-operator';

interface Crd {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: {
    versions: {
      schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, object> } } } };
    }[];
  };
}

interface Deployment {
  metadata: { generation: number };
  spec: { template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number; updatedReplicas?: number; observedGeneration?: number };
}

/** Starts `crane registry serve` on a free loopback port; resolves to its host:port. */
async function startRegistry(): Promise<{ child: ChildProcess; host: string }> {
  const child = spawn(crane, ['registry', 'serve', '--address', '127.0.0.1:0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const host = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const port = /serving on port (\d+)/.exec(log)?.[1];
      if (port) resolve(`127.0.0.1:${port}`);
    });
    child.once('exit', (code) => {
      reject(new Error(`crane registry serve exited with ${String(code)}: ${log}`));
    });
  });
  return { child, host };
}

describe('a release, from an OCI registry', () => {
  const {
    namespaces: [system, work],
  } = useNamespaces([
    {
      prefix: 'echo-release',
      labels: {
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
      },
    },
    'echo-release-work',
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'echo-release-test-'));
  const key = join(dir, 'cosign.key');
  const publicKey = join(dir, 'cosign.pub');
  const env = { ...helmEnv(), COSIGN_PASSWORD: PASSWORD, COSIGN_KEY: key };
  let registry: { child: ChildProcess; host: string } | undefined;
  const host = (): string => registry?.host ?? assert.fail('no registry');
  let pushed: Record<'0.0.1' | '0.0.2', { image: string; chart: string }>;
  const chartRef = (): string => `oci://${host()}/echo/charts/echo-operator`;
  const imageRepository = (): string => `${host()}/echo/echo-operator`;

  const release = (...args: string[]): string =>
    execFileSync(releaseScript, args, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  const push = (version: string): { image: string; chart: string } => {
    const out = release('push', join(dir, version), `${host()}/echo`, '--plain-http');
    const [, image = ''] = /^image (\S+)$/m.exec(out) ?? [];
    const [, chart = ''] = /^chart (\S+)$/m.exec(out) ?? [];
    return { image, chart };
  };
  const crd = (): Crd =>
    JSON.parse(kubectl('get', 'crd', 'echoes.example.com', '-o', 'json')) as Crd;
  const operatorDeployment = (): Deployment =>
    JSON.parse(
      kubectl('get', 'deployment', FULLNAME, '-n', system.name, '-o', 'json'),
    ) as Deployment;

  before(async () => {
    execFileSync(cosign, ['generate-key-pair'], { cwd: dir, env, stdio: 'pipe' });
    registry = await startRegistry();
    // 0.0.1: the image built from this tree, tagged 0.0.1, and the chart as it is.
    release('build', '0.0.1', '--output', join(dir, '0.0.1'));
    // 0.0.2: the CRD gains spec.note; the image is 0.0.1's, released again under 0.0.2.
    const chart = join(dir, 'chart');
    cpSync(CHART, chart, { recursive: true });
    const file = join(chart, CRD_FILE.replace('charts/echo-operator/', ''));
    const changed = parse(readFileSync(file, 'utf8')) as Crd;
    const spec = changed.spec.versions[0]?.schema.openAPIV3Schema.properties.spec;
    assert.ok(spec);
    spec.properties.note = { type: 'string', maxLength: 64, description: 'A note (0.0.2).' };
    writeFileSync(file, stringify(changed));
    release(
      'build',
      '0.0.2',
      '--output',
      join(dir, '0.0.2'),
      '--chart',
      chart,
      '--image',
      join(dir, '0.0.1'),
    );
    pushed = { '0.0.1': push('0.0.1'), '0.0.2': push('0.0.2') };
  });

  after(() => {
    registry?.child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    // The CRD as the test kit made it, for the suites after this one: a replace drops the field
    // 0.0.2 added (an apply would leave what another field manager owns) and Helm's ownership.
    kubectl('replace', '-f', join(repo, CRD_FILE));
    kubectl('wait', '--for=condition=Established', 'crd/echoes.example.com');
  });

  it('builds one folder: the image as an OCI archive, its SBOM, the chart, SHA256SUMS signed', () => {
    const folder = join(dir, '0.0.1');
    assert.deepEqual(readdirSync(folder).sort(), [
      'SHA256SUMS',
      'SHA256SUMS.bundle',
      'SHA256SUMS.sig',
      'cosign.pub',
      'echo-operator-0.0.1.oci.tar',
      'echo-operator-0.0.1.sbom.cdx.json',
      'echo-operator-0.0.1.tgz',
    ]);
    execFileSync('sha256sum', ['--check', '--quiet', 'SHA256SUMS'], { cwd: folder });
    assert.equal(readFileSync(join(folder, 'cosign.pub'), 'utf8'), readFileSync(publicKey, 'utf8'));
    const verifyBlob = (sums: string): void => {
      execFileSync(
        cosign,
        ['verify-blob', '--key', publicKey, '--bundle', join(folder, 'SHA256SUMS.bundle')].concat([
          '--insecure-ignore-tlog=true',
          sums,
        ]),
        { stdio: 'pipe' },
      );
    };
    verifyBlob(join(folder, 'SHA256SUMS'));
    const tampered = join(dir, 'SHA256SUMS.tampered');
    writeFileSync(
      tampered,
      readFileSync(join(folder, 'SHA256SUMS'), 'utf8').replace(/^./, (c) =>
        c === '0' ? '1' : '0',
      ),
    );
    assert.throws(() => {
      verifyBlob(tampered);
    }, /invalid signature/);

    const sbom = JSON.parse(
      readFileSync(join(folder, 'echo-operator-0.0.1.sbom.cdx.json'), 'utf8'),
    ) as {
      bomFormat: string;
      specVersion: string;
      metadata: { component: { type: string; version: string; hashes: { content: string }[] } };
      components: { name: string; version: string; purl?: string }[];
    };
    assert.equal(sbom.bomFormat, 'CycloneDX');
    assert.equal(sbom.specVersion, '1.6');
    assert.equal(sbom.metadata.component.type, 'container');
    assert.equal(sbom.metadata.component.version, '0.0.1');
    assert.equal(
      `sha256:${sbom.metadata.component.hashes[0]?.content ?? ''}`,
      pushed['0.0.1'].image.split('@')[1],
    );
    const purls = sbom.components.map((c) => c.purl ?? '');
    assert.ok(
      purls.some((p) => p.startsWith('pkg:deb/debian/libc6@')),
      'Debian libc6',
    );
    assert.ok(
      purls.some((p) => p.startsWith('pkg:npm/node-linux-')),
      'the Node binary',
    );
    assert.ok(
      purls.some((p) => p.startsWith('pkg:npm/pino@')),
      'an npm dependency',
    );
    assert.ok(!purls.some((p) => p.startsWith('pkg:npm/typescript@')), 'no development dependency');

    const chart = parse(
      execFileSync(
        join(toolsBinDir(), 'helm'),
        ['show', 'chart', join(folder, 'echo-operator-0.0.1.tgz')],
        {
          encoding: 'utf8',
        },
      ),
    ) as { version: string; appVersion: string };
    assert.deepEqual([chart.version, chart.appVersion], ['0.0.1', '0.0.1']);
  });

  it('pushed the image and the chart, signed: cosign verifies them with the public key only', () => {
    for (const ref of [pushed['0.0.1'].image, pushed['0.0.1'].chart, pushed['0.0.2'].chart]) {
      const out = execFileSync(
        cosign,
        [
          'verify',
          '--key',
          publicKey,
          '--insecure-ignore-tlog=true',
          '--allow-http-registry=true',
          ref,
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      assert.match(out, new RegExp(ref.split('@')[1] ?? 'no digest'));
    }
    // 0.0.2's image is 0.0.1's: one manifest, two tags.
    assert.equal(pushed['0.0.2'].image, pushed['0.0.1'].image);
    const other = join(dir, 'other');
    execFileSync('mkdir', ['-p', other]);
    execFileSync(cosign, ['generate-key-pair'], { cwd: other, env, stdio: 'pipe' });
    assert.throws(() =>
      execFileSync(
        cosign,
        ['verify', '--key', join(other, 'cosign.pub'), '--insecure-ignore-tlog=true'].concat([
          '--allow-http-registry=true',
          pushed['0.0.1'].image,
        ]),
        { stdio: 'pipe' },
      ),
    );
  });

  it('installs 0.0.1 from the registry over a CRD that was not Helm’s, once handed over', () => {
    const install = [
      'install',
      RELEASE,
      chartRef(),
      '--version',
      '0.0.1',
      '--plain-http',
      '--namespace',
      system.name,
      '--set',
      `image.repository=${imageRepository()}`,
      '--wait',
      '--timeout=120s',
    ];
    // The test kit applied the CRD: Helm refuses to take it over, and says why.
    assert.throws(
      () => helm(...install),
      (e: Error & { stderr?: string }) =>
        (e.stderr ?? '').includes(
          'exists and cannot be imported into the current release: invalid ownership metadata',
        ),
    );
    adoptCrd(RELEASE, system.name);
    helm(...install);
    assert.match(helm('status', RELEASE, '-n', system.name), /STATUS: deployed/);
    const deployment = operatorDeployment();
    assert.equal(deployment.spec.template.spec.containers[0]?.image, `${imageRepository()}:0.0.1`);
    assert.equal(deployment.status?.readyReplicas, 1);
    assert.match(
      kubectl('get', 'pods', '-n', system.name, '-o', 'name'),
      /^pod\/echo-echo-operator-/m,
    );
    const served = crd();
    assert.equal(served.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
    assert.equal(served.metadata.labels?.['helm.sh/chart'], 'echo-operator-0.0.1');
    assert.equal(
      served.spec.versions[0]?.schema.openAPIV3Schema.properties.spec.properties.note,
      undefined,
    );
    // An Echo of 0.0.1: a note is not in its schema, and kubectl's strict validation refuses it.
    const echo = echoManifest({ name: 'kept', replicas: 1 });
    assert.throws(
      () =>
        kubectlWithInput(
          JSON.stringify({ ...echo, spec: { replicas: 1, note: 'refused' } }),
          'apply',
          '-n',
          work.name,
          '-f',
          '-',
        ),
      (e: Error & { stderr?: string }) => (e.stderr ?? '').includes('unknown field "spec.note"'),
    );
    kubectlWithInput(JSON.stringify(echo), 'apply', '-n', work.name, '-f', '-');
  });

  it('upgrades to 0.0.2: the CRD serves the new field, the Deployment rolls to 0.0.2, the Echo stays', async () => {
    const uid = kubectl('get', 'echo', 'kept', '-n', work.name, '-o', 'jsonpath={.metadata.uid}');
    const before = operatorDeployment();
    helm(
      'upgrade',
      RELEASE,
      chartRef(),
      '--version',
      '0.0.2',
      '--plain-http',
      '--namespace',
      system.name,
      '--reset-then-reuse-values',
      '--wait',
      '--timeout=120s',
    );
    const after = operatorDeployment();
    assert.equal(after.spec.template.spec.containers[0]?.image, `${imageRepository()}:0.0.2`);
    assert.ok(after.metadata.generation > before.metadata.generation);
    assert.equal(after.status?.updatedReplicas, 1);
    const served = crd();
    assert.equal(served.metadata.labels?.['helm.sh/chart'], 'echo-operator-0.0.2');
    assert.ok(served.spec.versions[0]?.schema.openAPIV3Schema.properties.spec.properties.note);
    assert.match(kubectl('explain', 'echo.spec.note'), /A note \(0\.0\.2\)\./);
    assert.equal(
      kubectl('get', 'echo', 'kept', '-n', work.name, '-o', 'jsonpath={.metadata.uid}'),
      uid,
    );
    // The API server may take a moment to serve the new schema to writes.
    await eventually('the note to be kept', () => {
      kubectl(
        'patch',
        'echo',
        'kept',
        '-n',
        work.name,
        '--type=merge',
        '-p',
        '{"spec":{"note":"kept"}}',
      );
      const note = kubectl('get', 'echo', 'kept', '-n', work.name, '-o', 'jsonpath={.spec.note}');
      return Promise.resolve(note === 'kept' ? true : undefined);
    });
  });

  it('uninstalls, keeping the CRD of 0.0.2 and every Echo', () => {
    helm('uninstall', RELEASE, '--namespace', system.name, '--wait', '--timeout=120s');
    assert.equal(
      kubectl(
        'get',
        'deployments',
        '-n',
        system.name,
        '-l',
        `app.kubernetes.io/instance=${RELEASE}`,
        '-o',
        'name',
      ).trim(),
      '',
    );
    assert.ok(crd().spec.versions[0]?.schema.openAPIV3Schema.properties.spec.properties.note);
    assert.equal(
      kubectl('get', 'echo', 'kept', '-n', work.name, '-o', 'jsonpath={.spec.note}'),
      'kept',
    );
  });
});

describe('the umbrella chart, with echo-operator as a subchart', () => {
  const {
    namespaces: [platform],
  } = useNamespaces(['platform']);
  const umbrella = join(repo, 'test/chart/umbrella');

  before(() => {
    for (const file of readdirSync(MONITORING_CRDS))
      kubectl('apply', '--server-side', '-f', join(MONITORING_CRDS, file));
    kubectl('wait', '--for=condition=Established', 'crd/servicemonitors.monitoring.coreos.com');
    helm('dependency', 'build', umbrella);
  });

  it('installs: the operator’s objects are created and its pods admitted, then uninstalls', () => {
    helm(
      'install',
      'platform',
      umbrella,
      '--namespace',
      platform.name,
      // The CRD is the test kit's, and stays so: the platform leaves it out, as a second release
      // in a cluster does.
      '--set',
      'echo-operator.crds.enabled=false',
      '--set',
      `echo-operator.metrics.serviceMonitor.namespace=${platform.name}`,
      '--wait',
      '--timeout=120s',
    );
    const name = 'echo-operator';
    const deployment = JSON.parse(
      kubectl('get', 'deployment', name, '-n', platform.name, '-o', 'json'),
    ) as Deployment;
    assert.equal(deployment.status?.readyReplicas, 2);
    const objects = kubectl(
      'get',
      'serviceaccount,service,servicemonitor,prometheusrule,poddisruptionbudget',
      '-n',
      platform.name,
      '-l',
      'app.kubernetes.io/instance=platform',
      '-o',
      'name',
    );
    for (const kind of [
      'serviceaccount',
      'service',
      'servicemonitor',
      'prometheusrule',
      'poddisruptionbudget',
    ])
      assert.match(objects, new RegExp(`^${kind}[^/]*/${name}$`, 'm'), kind);
    assert.match(kubectl('get', 'clusterrole', name, '-o', 'name'), /clusterrole/);
    assert.equal(
      kubectl(
        'get',
        'pods',
        '-n',
        platform.name,
        '-l',
        'app.kubernetes.io/name=echo-operator',
        '-o',
        'name',
      )
        .trim()
        .split('\n').length,
      2,
    );
    helm('uninstall', 'platform', '--namespace', platform.name, '--wait', '--timeout=120s');
    assert.equal(
      kubectl(
        'get',
        'clusterroles,clusterrolebindings',
        '-l',
        'app.kubernetes.io/instance=platform',
        '-o',
        'name',
      ).trim(),
      '',
    );
  });
});
