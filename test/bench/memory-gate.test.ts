// The memory regression gate: heap held per cached object (Echoes and Deployments, trimmed as the
// operator caches them) must stay within 10% of the baseline in bench/memory-baseline.json.
// `make bench-memory` runs it alone; ECHO_UPDATE_MEMORY_BASELINE=1 records a new baseline.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inParallel } from '../../bench/run.ts';
import type { Echo } from '../../src/echo/api.ts';
import { FIELD_MANAGER, desiredDeployment } from '../../src/echo/desired.ts';
import { echoManifest } from '../support/echo.ts';
import { clusterKubeconfig } from '../support/kube.ts';
import { useNamespace } from '../support/namespaces.ts';

const BASELINE = fileURLToPath(new URL('../../bench/memory-baseline.json', import.meta.url));
const PROBE = fileURLToPath(new URL('../../bench/memory-probe.ts', import.meta.url));
const N = 1000;
const TOLERANCE = 1.1;

interface Probe {
  echoes: number;
  deployments: number;
  bytesPerObject: number;
}

describe('memory per cached object', () => {
  const { admin, ns } = useNamespace('memory');

  before(async () => {
    const names = Array.from({ length: N }, (_, i) => `echo-${String(i).padStart(4, '0')}`);
    // What the operator would cache: N Echoes (with labels) and the Deployment of each, as the
    // operator applies it. No operator runs, so nothing changes while the probe measures.
    await inParallel(names, 50, async (name) => {
      const echo = await admin.request<Echo>({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${ns.name}/echoes`,
        body: echoManifest({
          name,
          replicas: 0,
          labels: { team: 'platform', 'app.kubernetes.io/part-of': 'bench' },
        }),
      });
      await admin.apply(
        `/apis/apps/v1/namespaces/${ns.name}/deployments/${name}`,
        desiredDeployment(echo),
        FIELD_MANAGER,
      );
    });
  });

  it('stays within 10% of the baseline', () => {
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', PROBE, `--kubeconfig=${clusterKubeconfig()}`, `--namespace=${ns.name}`],
      { encoding: 'utf8' },
    );
    const probe = JSON.parse(out) as Probe;
    assert.equal(probe.echoes, N);
    assert.equal(probe.deployments, N);
    if (process.env.ECHO_UPDATE_MEMORY_BASELINE === '1') {
      writeFileSync(
        BASELINE,
        `${JSON.stringify({ bytesPerObject: probe.bytesPerObject, objects: 2 * N, node: process.version, recorded: new Date().toISOString().slice(0, 10) }, null, 2)}\n`,
      );
      return;
    }
    const baseline = JSON.parse(readFileSync(BASELINE, 'utf8')) as { bytesPerObject: number };
    assert.ok(
      probe.bytesPerObject <= baseline.bytesPerObject * TOLERANCE,
      `${String(probe.bytesPerObject)} bytes per cached object, baseline ${String(baseline.bytesPerObject)} (+10% allowed)`,
    );
  });
});
