// What a burst of Echoes costs in writes, counted from the API server's audit log for the
// operator's own identity: a created Echo at most 2 (its Deployment and one status, no Event), a
// scaled one at most 2.5. The operator holds a rollout's progress back for longer than any rollout
// here takes, so what is counted is what the design writes, not how fast the machine is.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Echo } from '../../src/echo/api.ts';
import { auditedCalls } from '../support/audit.ts';
import { isReady } from '../support/fixtures.ts';
import { eventually } from '../support/kube.ts';
import { namespaceApi } from '../support/namespace-api.ts';
import { useNamespace } from '../support/namespaces.ts';

const ACCOUNT = 'echo-operator';
const BURST = 30;
const REPLICAS = 1;
const WRITE_VERBS = new Set(['create', 'patch', 'update', 'delete', 'deletecollection']);

describe('writes per Echo in a burst', () => {
  let busyWorkers = 0;
  const env = useNamespace('writes', {
    serviceAccount: ACCOUNT,
    operator: {
      progressStatusDelayMs: 10 * 60_000,
      controllerObserver: {
        activeWorkers: (count) => {
          busyWorkers = count;
        },
      },
    },
  });
  const { admin, ns } = env;

  const { echoes, createEcho, patch } = namespaceApi(admin, ns.name);
  const names = Array.from({ length: BURST }, (_, i) => `burst-${String(i)}`);

  /**
   * Waits until every Echo is Ready with `replicas` for its generation, then until the operator is
   * idle (nothing queued, no worker busy) and its Events are sent: every write it makes for the
   * burst is then in the audit log.
   */
  const allReady = async (replicas: number): Promise<void> => {
    await eventually(
      `${String(BURST)} Echoes Ready with ${String(replicas)} replicas`,
      async () => {
        const list = await admin.request<{ items: Echo[] }>({ path: echoes() });
        const ready = list.items.filter((e) => isReady(e, replicas)).length;
        return ready === BURST ? true : undefined;
      },
      180_000,
    );
    await eventually('the operator to be idle', () =>
      Promise.resolve(
        busyWorkers === 0 && env.operator.operator.queue.length === 0 ? true : undefined,
      ),
    );
    await env.operator.operator.recorder.flush();
  };

  /** The operator's writes since `since`, counted as `verb resource`. */
  const writesSince = async (since: number): Promise<Record<string, number>> => {
    const calls = await auditedCalls(admin, `system:serviceaccount:${ns.name}:${ACCOUNT}`, since);
    const counts: Record<string, number> = {};
    for (const call of calls) {
      const [verb = '', resource = ''] = call.split(' ');
      if (!WRITE_VERBS.has(verb)) continue;
      const kind = `${verb} ${resource}`;
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    return counts;
  };
  const total = (counts: Record<string, number>): number =>
    Object.values(counts).reduce((a, b) => a + b, 0);

  it(`costs at most 2 writes per created Echo, Events included, in a burst of ${String(BURST)}`, async (t) => {
    const since = Date.now();
    await Promise.all(names.map((name) => createEcho(name, REPLICAS)));
    await allReady(REPLICAS);
    const writes = await writesSince(since);
    t.diagnostic(`writes: ${JSON.stringify(writes)}`);
    assert.ok(
      total(writes) <= 2 * BURST,
      `${String(total(writes))} writes for ${String(BURST)} created Echoes: ${JSON.stringify(writes)}`,
    );
  });

  it('costs at most 2.5 writes per Echo to scale them all at once', async (t) => {
    const since = Date.now();
    await Promise.all(
      names.map((name) => patch(`${echoes()}/${name}`, { spec: { replicas: REPLICAS + 1 } })),
    );
    await allReady(REPLICAS + 1);
    const writes = await writesSince(since);
    t.diagnostic(`writes: ${JSON.stringify(writes)}`);
    assert.ok(
      total(writes) <= 2.5 * BURST,
      `${String(total(writes))} writes for ${String(BURST)} scaled Echoes: ${JSON.stringify(writes)}`,
    );
  });
});
