// The client's retries against the real API server: throttled by API Priority and Fairness (429
// with Retry-After), and behind a proxy that answers 503 in its place or resets the connection a
// LIST arrived on. Each time the client recovers within the attempts its backoff allows, writes
// are not retried when the server may have applied them, and a request that keeps failing ends
// at its deadline. Also: its User-Agent, as the API server records it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { KubeClient, defaultUserAgent, type ClientOptions } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { auditedRequests } from '../support/audit.ts';
import { startHttpFaultProxy, type HttpFaultProxy } from '../support/fault-proxy.ts';
import { throttleServiceAccount } from '../support/flowcontrol.ts';
import { startHoldingWebhook } from '../support/holding-webhook.ts';
import { clusterAddress, eventually, grantRole, serviceAccountToken } from '../support/kube.ts';
import { useNamespace } from '../support/namespaces.ts';

const ACCOUNT = 'client-retry';

describe('KubeClient retries against the API server', () => {
  const fixture = useNamespace('client-retry');
  const { admin } = fixture;
  const ns = fixture.ns.name;
  let token: string;
  let proxy: HttpFaultProxy;
  const ca = readFileSync(clusterAddress().caFile);
  const configmaps = () => `/api/v1/namespaces/${ns}/configmaps`;
  const isList = (method: string, path: string) =>
    method === 'GET' && path.startsWith(configmaps());

  before(async () => {
    await grantRole(admin, ns, `${ns}/${ACCOUNT}`, [
      { apiGroups: [''], resources: ['configmaps'], verbs: ['list', 'create'] },
    ]);
    token = await serviceAccountToken(admin, ns, ACCOUNT);
    const clusterDir = process.env.ECHO_TEST_CLUSTER_DIR;
    assert.ok(clusterDir, 'the shared test cluster names its directory');
    proxy = await startHttpFaultProxy(clusterAddress().server, clusterDir);
  });

  after(async () => {
    await proxy.close();
  });

  /** A client as the test's ServiceAccount, through the proxy unless `direct`; `codes` its attempts. */
  const client = (options: ClientOptions = {}, direct = false, bearer = token) => {
    const codes: number[] = [];
    const server = direct ? clusterAddress().server : `https://127.0.0.1:${String(proxy.port)}`;
    const c = new KubeClient(
      {
        server: new URL(server),
        tls: { ca, rejectUnauthorized: true },
        credentials: () =>
          Promise.resolve({ headers: { authorization: `Bearer ${bearer}` }, expiresAt: Infinity }),
        source: 'test',
      },
      {
        onResponse: (e) => {
          codes.push(e.code);
          options.onResponse?.(e);
        },
        ...options,
      },
    );
    return { c, codes };
  };

  it('names itself as client-go does, in the audit log', async () => {
    const since = Date.now();
    const { c } = client({}, true);
    try {
      await c.request({ path: configmaps() });
    } finally {
      await c.close();
    }
    const requests = await auditedRequests(
      admin,
      `system:serviceaccount:${ns}:${ACCOUNT}`,
      since - 1000,
    );
    const lists = requests.filter((r) => r.call === 'list configmaps');
    assert.equal(lists.length, 1, JSON.stringify(requests));
    assert.equal(lists[0]?.userAgent, defaultUserAgent());
  });

  it('retries a LIST answered 503 without Retry-After, with growing waits', async () => {
    const rule = proxy.inject(isList, { status: 503 }, 2);
    const { c, codes } = client();
    try {
      await c.request({ path: configmaps() });
    } finally {
      await c.close();
    }
    assert.deepEqual(codes, [503, 503, 200]);
    assert.equal(rule.arrivals.length, 3);
    const [first = 0, second = 0, third = 0] = rule.arrivals;
    // The backoff's least waits (0.5 s, then 1 s): load only lengthens them.
    assert.ok(second - first >= 500, `first wait ${String(second - first)} ms`);
    assert.ok(third - second >= 1000, `second wait ${String(third - second)} ms`);
  });

  it('waits out a Retry-After given as an HTTP date', async (t) => {
    // Three to four seconds ahead: an HTTP date has whole seconds.
    const retryAt = Math.ceil((Date.now() + 3000) / 1000) * 1000;
    const retryAfter = new Date(retryAt).toUTCString();
    const rule = proxy.inject(isList, { status: 503, headers: { 'retry-after': retryAfter } }, 1);
    const { c, codes } = client();
    try {
      await c.request({ path: configmaps() });
    } finally {
      await c.close();
    }
    t.diagnostic(
      `Retry-After: ${retryAfter}; retried ${String((rule.arrivals[1] ?? 0) - retryAt)} ms after it`,
    );
    assert.deepEqual(codes, [503, 200]);
    // The proxy and the client read one clock; a timer may fire a millisecond early.
    assert.ok((rule.arrivals[1] ?? 0) >= retryAt - 5, 'retried at the date, not before');
  });

  it('retries a LIST whose connection was reset, but not a create', async () => {
    const listRule = proxy.inject(isList, 'reset', 1);
    const { c, codes } = client();
    try {
      const list = await c.request<{ items: unknown[] }>({ path: configmaps() });
      assert.ok(Array.isArray(list.items));
      assert.deepEqual(codes, [0, 200], 'one attempt lost with its connection, one answered');
      assert.equal(listRule.arrivals.length, 2);

      const isCreate = (method: string, path: string) =>
        method === 'POST' && path.startsWith(configmaps());
      const createRule = proxy.inject(isCreate, 'reset', 1);
      await assert.rejects(
        c.request({ method: 'POST', path: configmaps(), body: { metadata: { name: 'once' } } }),
        (err: Error) => !(err instanceof ApiError),
      );
      assert.equal(
        createRule.arrivals.length,
        1,
        'a write the server may have applied is not sent again',
      );
    } finally {
      await c.close();
    }
  });

  it('gives up on a LIST that keeps failing at its deadline', async (t) => {
    const deadlineMs = 5000;
    const rule = proxy.inject(isList, { status: 503 });
    const { c, codes } = client({ requestDeadlineMs: deadlineMs });
    try {
      await assert.rejects(c.request({ path: configmaps() }), (err: unknown) => {
        assert.ok(err instanceof ApiError && err.code === 503, String(err));
        return true;
      });
    } finally {
      await c.close();
      rule.stop();
    }
    t.diagnostic(
      `${String(rule.arrivals.length)} attempts in the ${String(deadlineMs)} ms deadline`,
    );
    // Waits of at least 0.5, 1, 2 and 4 s: a fifth attempt would start past 5 s. Ten without the
    // deadline (the attempts limit).
    assert.ok(codes.length >= 2 && codes.length <= 4, `${String(codes.length)} attempts`);
    assert.equal(rule.arrivals.length, codes.length);
  });

  it('gives up at its deadline when API Priority and Fairness keeps rejecting it', async (t) => {
    const throttled = 'client-throttled';
    await grantRole(admin, ns, `${ns}/${throttled}`, [
      { apiGroups: [''], resources: ['configmaps'], verbs: ['list', 'create'] },
    ]);
    const throttledToken = await serviceAccountToken(admin, ns, throttled);
    // No seat of its own: APF still lets one request run when none of the level's does, so a
    // create held by a webhook that does not answer takes it, and every other request is 429.
    const throttle = await throttleServiceAccount(admin, ns, throttled, 0);
    // Creates of ConfigMaps labelled `hold` wait for it (30 s at most, then go ahead).
    const webhook = await startHoldingWebhook(admin, {
      namespace: ns,
      resource: { apiGroup: '', resource: 'configmaps' },
      operations: ['CREATE'],
      labels: { hold: 'true' },
      delayMs: Infinity,
      failurePolicy: 'Ignore',
    });
    const { c, codes } = client({ requestDeadlineMs: 5000 }, true, throttledToken);
    // The held create on a client of its own, with the default deadline: the short one would
    // end the create, and free its seat, while the request measured is still retrying.
    const holder = client({}, true, throttledToken).c;
    const holding = new AbortController();
    const agent = new Agent({ connect: { ca } });
    try {
      await eventually('the API server to classify the account under the new schema', async () => {
        const res = await request(`${clusterAddress().server}${configmaps()}`, {
          dispatcher: agent,
          headers: { authorization: `Bearer ${throttledToken}` },
        });
        await res.body.dump();
        return res.headers['x-kubernetes-pf-flowschema-uid'] === throttle.flowSchemaUid
          ? true
          : undefined;
      });
      const held = holder
        .request({
          method: 'POST',
          path: configmaps(),
          body: { metadata: { name: 'held', labels: { hold: 'true' } } },
          signal: holding.signal,
        })
        .catch(() => undefined);
      await eventually('the create to reach the webhook', () =>
        Promise.resolve(webhook.arrivals.length > 0 ? true : undefined),
      );
      codes.length = 0;
      await assert.rejects(c.request({ path: configmaps() }), { name: 'ApiError', code: 429 });
      t.diagnostic(`attempts: ${codes.join(', ')}`);
      // APF asks for at least a second between attempts: at most five start within 5 s; without
      // the deadline, ten.
      assert.ok(codes.length >= 2 && codes.length <= 5, codes.join(', '));
      assert.ok(
        codes.every((code) => code === 429),
        codes.join(', '),
      );
      holding.abort();
      await held;
    } finally {
      holding.abort();
      await agent.close();
      await holder.close();
      await c.close();
      await webhook.remove();
      await throttle.remove();
    }
  });
});
