import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { CRD_FILE, crdManifest, echoCrd } from '../../../src/echo/crd.ts';

describe('the CRD manifest', () => {
  it('in the chart is the one src/echo/api.ts generates (run make generate after a change)', () => {
    assert.equal(
      readFileSync(new URL(`../../../${CRD_FILE}`, import.meta.url), 'utf8'),
      crdManifest(),
    );
  });

  it('keeps the names echo-operator-rs manifests rely on', () => {
    const crd = parse(crdManifest()) as {
      metadata: { name: string };
      spec: {
        group: string;
        scope: string;
        names: { kind: string; plural: string; shortNames: string[] };
        versions: {
          name: string;
          schema: { openAPIV3Schema: { properties: { spec: { required: string[] } } } };
        }[];
      };
    };
    assert.equal(crd.metadata.name, 'echoes.example.com');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(
      [crd.spec.names.kind, crd.spec.names.plural, crd.spec.names.shortNames],
      ['Echo', 'echoes', ['echo']],
    );
    assert.equal(crd.spec.versions[0]?.name, 'v1');
    assert.deepEqual(crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.required, [
      'replicas',
    ]);
  });

  it('is a structural schema: every node has a type, no TypeBox-only keywords', () => {
    const walk = (node: unknown, path: string): void => {
      if (node === null || typeof node !== 'object') return;
      const n = node as Record<string, unknown>;
      if ('properties' in n || 'items' in n)
        assert.ok(typeof n.type === 'string', `${path} has a type`);
      for (const banned of ['const', 'anyOf', 'oneOf', '$id', 'patternProperties']) {
        assert.ok(!(banned in n), `${path} uses ${banned}`);
      }
      for (const [k, v] of Object.entries(n.properties ?? {})) walk(v, `${path}.${k}`);
      if (n.items) walk(n.items, `${path}[]`);
    };
    const version = (
      echoCrd() as { spec: { versions: { schema: { openAPIV3Schema: unknown } }[] } }
    ).spec.versions[0];
    walk(version?.schema.openAPIV3Schema, 'schema');
  });
});
