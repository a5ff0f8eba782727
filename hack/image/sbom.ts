// The image's SBOM (CycloneDX 1.6 JSON), written by hack/image/build.sh from what it put into the
// image, not from a scan of it: the Debian packages it unpacked (their name, version, architecture
// and source package, from each .deb), the Node binary (the npm package it came from, and its
// SHA-256), and the npm packages of /app/node_modules (package-lock.json's entries found there,
// with their integrity hashes and licenses). A scanner (syft) would miss the Debian packages: they
// are unpacked with dpkg-deb, so the image has no dpkg database to read. The operator itself is
// the image's application. No timestamp, and a serial number derived from the image's digest: the
// same image gives the same file.
//
//   node hack/image/sbom.ts --version V --repository R --digest sha256:… --platform linux/amd64 \
//     --debian debian.tsv --debian-version 12.13 --npm npm.txt --node-binary PATH > sbom.cdx.json
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Enums, Models, SPDX, Serialize, Spec } from '@cyclonedx/cyclonedx-library';
import { PackageURL } from 'packageurl-js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface LockEntry {
  version?: string;
  integrity?: string;
  license?: string;
  resolved?: string;
  dev?: boolean;
}

interface PackageJson {
  name: string;
  version: string;
  license?: string;
  homepage?: string;
}

const readJson = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));

/** An SPDX identifier, an SPDX expression, or a name the SPDX list does not know. */
function licenses(license: string | undefined): Models.LicenseRepository {
  const repository = new Models.LicenseRepository();
  if (!license) return repository;
  if (SPDX.isSupportedSpdxId(license)) repository.add(new Models.SpdxLicense(license));
  else if (/\s(OR|AND|WITH)\s/.test(license)) repository.add(new Models.LicenseExpression(license));
  else repository.add(new Models.NamedLicense(license));
  return repository;
}

/** npm's Subresource Integrity (`sha512-<base64>`) as a CycloneDX hash. */
function integrityHashes(integrity: string | undefined): Models.HashDictionary {
  const hashes = new Models.HashDictionary();
  const [algorithm, digest] = integrity?.split('-', 2) ?? [];
  const algorithms: Record<string, Enums.HashAlgorithm | undefined> = {
    sha1: Enums.HashAlgorithm['SHA-1'],
    sha256: Enums.HashAlgorithm['SHA-256'],
    sha512: Enums.HashAlgorithm['SHA-512'],
  };
  const name = algorithms[algorithm ?? ''];
  if (name && digest) hashes.set(name, Buffer.from(digest, 'base64').toString('hex'));
  return hashes;
}

/** `@scope/name` or `name`, as a purl's namespace and name. */
function npmPurl(name: string, version: string): string {
  const slash = name.indexOf('/');
  const [namespace, bare] = name.startsWith('@')
    ? [name.slice(0, slash), name.slice(slash + 1)]
    : [undefined, name];
  return new PackageURL('npm', namespace, bare, version, undefined, undefined).toString();
}

/** A UUID from the image's digest: the same image, the same serial number. */
function serialNumber(digest: string): string {
  const h = createHash('sha256').update(`echo-operator-sbom:${digest}`).digest('hex');
  const variant = ((parseInt(h.charAt(16), 16) & 0x3) | 0x8).toString(16);
  return `urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

interface Inputs {
  version: string;
  repository: string;
  digest: string;
  platform: string;
  debian: string;
  debianVersion: string;
  npm: string;
  nodeBinary: string;
}

/** The image itself: the SBOM's subject. */
function imageComponent(o: Inputs): Models.Component {
  const [registry, ...path] = o.repository.split('/');
  return new Models.Component(Enums.ComponentType.Container, path.join('/') || o.repository, {
    bomRef: 'image',
    version: o.version,
    group: registry,
    description: `The echo-operator image, ${o.repository}:${o.version} (${o.platform})`,
    hashes: new Models.HashDictionary([
      [Enums.HashAlgorithm['SHA-256'], o.digest.replace(/^sha256:/, '')],
    ]),
    purl: new PackageURL(
      'oci',
      undefined,
      o.repository.split('/').at(-1) ?? o.repository,
      o.digest,
      { arch: o.platform.split('/')[1] ?? '', repository_url: o.repository, tag: o.version },
      undefined,
    ).toString(),
  });
}

/** The Debian packages unpacked into the base layer, each as its .deb says. */
function debianComponents(o: Inputs): Models.Component[] {
  const distro = `debian-${o.debianVersion.split('.')[0] ?? ''}`;
  return readFileSync(o.debian, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [name = '', version = '', architecture = '', source = '', sourceVersion = ''] =
        line.split('\t');
      const qualifiers: Record<string, string> = { arch: architecture, distro };
      if (source && source !== name)
        qualifiers.upstream = sourceVersion !== version ? `${source}@${sourceVersion}` : source;
      return new Models.Component(Enums.ComponentType.Library, name, {
        bomRef: `deb:${name}`,
        version,
        purl: new PackageURL('deb', 'debian', name, version, qualifiers, undefined).toString(),
      });
    });
}

/**
 * Node: the binary the npm package `node` (pinned in package.json) installs for this platform,
 * from the npm package node-<os>-<arch> of the same version; it is the binary running this.
 */
function nodeComponent(o: Inputs, pinned: string | undefined): Models.Component {
  if (`v${pinned ?? ''}` !== process.version)
    throw new Error(`this Node is ${process.version}, package.json pins node ${String(pinned)}`);
  const name = `node-${process.platform}-${process.arch}`;
  return new Models.Component(Enums.ComponentType.Application, 'node', {
    bomRef: 'node',
    version: pinned,
    description: `Node.js, /usr/local/bin/node, from the npm package ${name}@${String(pinned)}`,
    purl: npmPurl(name, pinned ?? ''),
    licenses: licenses('MIT'),
    hashes: new Models.HashDictionary([
      [
        Enums.HashAlgorithm['SHA-256'],
        createHash('sha256').update(readFileSync(o.nodeBinary)).digest('hex'),
      ],
    ]),
  });
}

/** package-lock.json's entries that are in /app/node_modules. */
function npmComponents(o: Inputs, lock: Record<string, LockEntry>): Models.Component[] {
  return readFileSync(o.npm, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((where) => {
      const entry = lock[where];
      if (!entry?.version) throw new Error(`${where} is in the image but not in package-lock.json`);
      const name = where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length);
      return new Models.Component(Enums.ComponentType.Library, name, {
        bomRef: `npm:${where}`,
        version: entry.version,
        purl: npmPurl(name, entry.version),
        licenses: licenses(entry.license),
        hashes: integrityHashes(entry.integrity),
        properties: new Models.PropertyRepository([
          new Models.Property('echo-operator:path', `/app/${where}`),
        ]),
      });
    });
}

export function imageSbom(o: Inputs): string {
  const pkg = readJson(join(repo, 'package.json')) as PackageJson & {
    devDependencies: Record<string, string | undefined>;
  };
  const lock = readJson(join(repo, 'package-lock.json')) as {
    packages: Record<string, LockEntry>;
  };
  const bom = new Models.Bom({ serialNumber: serialNumber(o.digest) });
  bom.metadata.component = imageComponent(o);
  bom.metadata.tools.components.add(
    new Models.Component(Enums.ComponentType.Application, 'echo-operator hack/image/sbom.ts', {
      version: o.version,
    }),
  );
  const app = new Models.Component(Enums.ComponentType.Application, pkg.name, {
    bomRef: 'app',
    version: o.version,
    description: '/app: the operator, compiled to JavaScript',
    licenses: licenses(pkg.license),
  });
  const npm = npmComponents(o, lock.packages);
  for (const c of npm) app.dependencies.add(c.bomRef);
  for (const c of [app, ...debianComponents(o), nodeComponent(o, pkg.devDependencies.node), ...npm])
    bom.components.add(c);
  const serializer = new Serialize.JsonSerializer(
    new Serialize.JSON.Normalize.Factory(Spec.Spec1dot6),
  );
  return serializer.serialize(bom, { sortLists: true, space: 2 }) + '\n';
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: Object.fromEntries(
      [
        'version',
        'repository',
        'digest',
        'platform',
        'debian',
        'debian-version',
        'npm',
        'node-binary',
      ].map((k) => [k, { type: 'string' as const }]),
    ),
  });
  const need = (k: string): string => {
    const v = values[k];
    if (typeof v !== 'string' || v === '') throw new Error(`--${k} is required`);
    return v;
  };
  process.stdout.write(
    imageSbom({
      version: need('version'),
      repository: need('repository'),
      digest: need('digest'),
      platform: need('platform'),
      debian: need('debian'),
      debianVersion: need('debian-version'),
      npm: need('npm'),
      nodeBinary: need('node-binary'),
    }),
  );
}
