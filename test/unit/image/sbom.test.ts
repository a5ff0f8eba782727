import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { imageSbom } from '../../../hack/image/sbom.ts';

interface Component {
  type: string;
  name: string;
  version: string;
  purl?: string;
  'bom-ref': string;
  hashes?: { alg: string; content: string }[];
  licenses?: { license?: { id?: string; name?: string }; expression?: string }[];
}

describe('the image SBOM', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echo-sbom-'));
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    join(dir, 'debian.tsv'),
    'libc6\t2.36-9+deb12u14\tamd64\tglibc\t2.36-9+deb12u14\nnetbase\t6.4\tall\tnetbase\t6.4\n',
  );
  writeFileSync(join(dir, 'npm.txt'), 'node_modules/pino\nnode_modules/@opentelemetry/api\n');
  const digest = `sha256:${'ab'.repeat(32)}`;
  const render = (): {
    bomFormat: string;
    specVersion: string;
    serialNumber: string;
    metadata: { component: Component };
    components: Component[];
    dependencies?: { ref: string; dependsOn?: string[] }[];
  } =>
    JSON.parse(
      imageSbom({
        version: '1.2.3',
        repository: 'ghcr.io/echo-operator/echo-operator',
        digest,
        platform: 'linux/amd64',
        debian: join(dir, 'debian.tsv'),
        debianVersion: '12.13',
        npm: join(dir, 'npm.txt'),
        nodeBinary: process.execPath,
      }),
    ) as ReturnType<typeof render>;

  it('describes the image by digest, in CycloneDX 1.6, the same every time', () => {
    const sbom = render();
    assert.equal(sbom.bomFormat, 'CycloneDX');
    assert.equal(sbom.specVersion, '1.6');
    assert.equal(sbom.metadata.component.type, 'container');
    assert.equal(sbom.metadata.component.hashes?.[0]?.content, 'ab'.repeat(32));
    assert.match(sbom.metadata.component.purl ?? '', /^pkg:oci\/echo-operator@sha256:ab/);
    assert.match(sbom.serialNumber, /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab]/);
    assert.deepEqual(render(), sbom);
  });

  it('lists each Debian package, Node and each npm package with purls, licenses and hashes', () => {
    const byRef = new Map(render().components.map((c) => [c['bom-ref'], c]));
    assert.equal(
      byRef.get('deb:libc6')?.purl,
      'pkg:deb/debian/libc6@2.36-9+deb12u14?arch=amd64&distro=debian-12&upstream=glibc',
    );
    assert.equal(
      byRef.get('deb:netbase')?.purl,
      'pkg:deb/debian/netbase@6.4?arch=all&distro=debian-12',
    );
    const node = byRef.get('node');
    assert.equal(node?.version, process.version.slice(1));
    assert.deepEqual(
      (node.hashes ?? []).map((h) => h.alg),
      ['SHA-256'],
    );
    const api = byRef.get('npm:node_modules/@opentelemetry/api');
    assert.match(api?.purl ?? '', /^pkg:npm\/%40opentelemetry\/api@\d/);
    assert.equal(api?.licenses?.[0]?.license?.id, 'Apache-2.0');
    const hashes = api.hashes ?? [];
    assert.deepEqual(
      hashes.map((h) => h.alg),
      ['SHA-512'],
    );
    assert.match(JSON.stringify(hashes), /"content":"[0-9a-f]{128}"/);
    assert.equal(byRef.get('app')?.licenses?.[0]?.license?.id, 'MIT');
  });
});
