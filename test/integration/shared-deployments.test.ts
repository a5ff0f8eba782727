// Deployments that other field managers also write (a mesh's sidecar, a policy engine's env var
// and labels): the operator owns only what it applies, so what others add never makes it write
// again, at their events, at resyncs or after a restart, counted from the API server's audit log;
// what it owns is still put back.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { before, describe, it } from 'node:test';
import { DEFAULT_IMAGE } from '../../src/echo/api.ts';
import { auditedCalls } from '../support/audit.ts';
import { eventually, kubectl } from '../support/kube.ts';
import { namespaceApi } from '../support/namespace-api.ts';
import { startOperator, type RunningOperator } from '../support/operator.ts';
import { useNamespace } from '../support/namespaces.ts';

const ACCOUNT = 'echo-operator';
const RESYNC_MS = 2000;
const REPLICAS = 2;

const COUNTS = ['replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas'] as const;
type Count = (typeof COUNTS)[number];

interface LiveDeployment {
  metadata: { generation: number; labels?: Record<string, string> };
  spec: {
    replicas: number;
    template: { spec: { containers: { name: string; image: string; env?: { name: string }[] }[] } };
  };
  status?: Partial<Record<Count, number>> & { observedGeneration?: number };
}

describe('Deployments that other field managers also write', () => {
  const fixture = useNamespace('shared', { serviceAccount: ACCOUNT });
  const { admin, ns } = fixture;
  /** Reconciles finished by the running operator: what waits on resyncs count. */
  let reconciles = 0;

  const { deployments, createEcho, getEcho, patch, readyEcho } = namespaceApi(admin, ns.name);
  const getDeployment = (name: string): Promise<LiveDeployment> =>
    admin.request<LiveDeployment>({ path: `${deployments()}/${name}` });
  const operatorUser = (): string => `system:serviceaccount:${ns.name}:${ACCOUNT}`;

  const start = async (): Promise<RunningOperator> => {
    reconciles = 0;
    fixture.operator = await startOperator(
      [ns.name],
      {
        resyncMs: RESYNC_MS,
        controllerObserver: {
          reconciled: () => {
            reconciles++;
          },
        },
      },
      fixture.kubeconfig,
    );
    return fixture.operator;
  };

  /** Waits until `count` more reconciles have finished, and the Events they recorded are sent. */
  const reconciled = async (count: number): Promise<void> => {
    const target = reconciles + count;
    await eventually(`${String(count)} more reconciles`, () =>
      Promise.resolve(reconciles >= target ? true : undefined),
    );
    await fixture.operator.operator.recorder.flush();
  };

  /**
   * Waits until the Deployment has rolled out whatever changed its template and the Echo's status
   * says so: after that the operator has nothing left to write.
   */
  const settled = (name: string): Promise<true> =>
    eventually(`Deployment ${name} rolled out and its Echo's status caught up`, async () => {
      const allAt = (o: Partial<Record<Count, number>> = {}): boolean =>
        COUNTS.every((k) => o[k] === REPLICAS);
      const d = await getDeployment(name);
      const echo = await getEcho(name);
      const ready = echo.status?.conditions?.find((c) => c.type === 'Ready');
      return d.status?.observedGeneration === d.metadata.generation &&
        allAt(d.status) &&
        echo.status?.observedGeneration === echo.metadata.generation &&
        ready?.status === 'True' &&
        allAt(echo.status)
        ? true
        : undefined;
    });

  before(async () => {
    await start();
  });

  const names = ['sidecar', 'env', 'label'];

  it('writes nothing for what others added: at their events, at resyncs, after a restart', async () => {
    for (const name of names) await createEcho(name, REPLICAS);
    for (const name of names) await readyEcho(name, REPLICAS);
    const others = Date.now();
    const deploy = (name: string): string[] => ['-n', ns.name, 'patch', 'deployment', name];
    // The mesh of the issue: a sidecar container, by strategic merge patch.
    kubectl(
      ...deploy('sidecar'),
      '--type=strategic',
      '--field-manager=mesh',
      '-p',
      '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}',
    );
    // A policy engine: an env var in the operator's own container, and labels and annotations.
    kubectl(
      ...deploy('env'),
      '--type=strategic',
      '--field-manager=policy',
      '-p',
      '{"spec":{"template":{"spec":{"containers":[{"name":"echo","env":[{"name":"INJECTED","value":"yes"}]}]}}}}',
    );
    kubectl(
      ...deploy('label'),
      '--type=merge',
      '--field-manager=labeler',
      '-p',
      '{"metadata":{"labels":{"policy.example/scanned":"true"},"annotations":{"policy.example/report":"ok"}}}',
    );
    for (const name of names) await settled(name);

    // Nothing the others added was taken away.
    const sidecar = await getDeployment('sidecar');
    assert.deepEqual(sidecar.spec.template.spec.containers.map((c) => c.name).sort(), [
      'echo',
      'sidecar',
    ]);
    const env = await getDeployment('env');
    assert.deepEqual(
      env.spec.template.spec.containers[0]?.env?.map((e) => e.name),
      ['INJECTED'],
    );
    assert.equal(
      (await getDeployment('label')).metadata.labels?.['policy.example/scanned'],
      'true',
    );

    // Their rollouts moved the Echoes' status, which the operator writes; never a Deployment or
    // an Event.
    await fixture.operator.operator.recorder.flush();
    const duringRollouts = (await auditedCalls(admin, operatorUser(), others)).filter(
      (c) => !c.startsWith('patch echoes/status '),
    );

    // Two resyncs: every Echo is settled, so the runtime queues none of them again.
    const resyncs = Date.now();
    const before = reconciles;
    await sleep(2 * RESYNC_MS + 500);
    const atResyncs = await auditedCalls(admin, operatorUser(), resyncs);
    assert.equal(reconciles, before, 'settled Echoes are not reconciled at a resync');

    // A restart: the new process lists and watches, reconciles every Echo once, resyncs twice.
    await fixture.operator.stop();
    const restart = Date.now();
    const restarted = await start();
    await reconciled(names.length);
    await sleep(2 * RESYNC_MS + 500);
    await fixture.operator.operator.recorder.flush();
    const afterRestart = (await auditedCalls(admin, operatorUser(), restart)).sort();

    assert.deepEqual(
      { duringRollouts, atResyncs, afterRestart },
      {
        duringRollouts: [],
        atResyncs: [],
        // The Manager's startup check (is the Echo API served?), then the informers, which start
        // with WatchList (a watch that sends the initial state), not a list.
        afterRestart: ['get', 'watch deployments', 'watch echoes'],
      },
      'requests of the operator besides its status writes and its informers',
    );
    assert.equal(restarted.counts.writes(), 0, "the operator's own count agrees");
  });

  it('still puts back the fields it owns, and leaves the sidecar', async () => {
    const before = fixture.operator.counts.writes();
    await patch(`${deployments()}/sidecar`, { spec: { replicas: 5 } });
    await eventually('replicas put back', async () =>
      (await getDeployment('sidecar')).spec.replicas === REPLICAS ? true : undefined,
    );
    kubectl(
      '-n',
      ns.name,
      'patch',
      'deployment',
      'sidecar',
      '--type=strategic',
      '--field-manager=someone',
      '-p',
      '{"spec":{"template":{"spec":{"containers":[{"name":"echo","image":"someone/else:1"}]}}}}',
    );
    const d = await eventually('the image put back', async () => {
      const live = await getDeployment('sidecar');
      const echo = live.spec.template.spec.containers.find((c) => c.name === 'echo');
      return echo?.image === DEFAULT_IMAGE ? live : undefined;
    });
    assert.deepEqual(d.spec.template.spec.containers.map((c) => `${c.name} ${c.image}`).sort(), [
      `echo ${DEFAULT_IMAGE}`,
      'sidecar busybox',
    ]);
    assert.ok(fixture.operator.counts.writes() > before, 'the operator did write');
  });
});
