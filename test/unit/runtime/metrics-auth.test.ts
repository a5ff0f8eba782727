// The metrics authorizer against a scripted API server: which review answers give 200, 401, 403,
// 500 or 503; a decision cached per token hash for its TTL (allowed longer than refused, errors
// never); concurrent scrapes with one token sharing one review; reviews in flight bounded.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccessDecision } from '../../../src/http/server.ts';
import type { RequestOptions } from '../../../src/kube/client.ts';
import { ApiError } from '../../../src/kube/errors.ts';
import type { Requester } from '../../../src/kube/resource.ts';
import {
  DECISION_CACHE_LIMITS,
  DecisionCache,
  bearerToken,
  metricsAuthorizer,
} from '../../../src/runtime/metrics-auth.ts';
import { createLoggers } from '../../../src/telemetry/logger.ts';

const log = createLoggers('silent').module('manager');

interface Script {
  /** Tokens the TokenReview accepts, by the user they name. */
  users: Record<string, string>;
  /** Users the SubjectAccessReview allows. */
  allowed: Set<string>;
  /** When set, every review fails with it. */
  failure?: Error;
}

/** A requester answering TokenReviews and SubjectAccessReviews from `script`, counting them. */
function reviewer(script: Script) {
  const sent: RequestOptions[] = [];
  let release: () => void = () => undefined;
  let gate: Promise<void> | undefined;
  const client: Requester = {
    request: async <T>(opts: RequestOptions): Promise<T> => {
      sent.push(opts);
      if (gate) await gate;
      if (script.failure) throw script.failure;
      const body = opts.body as { spec: { token?: string; user?: string } };
      if (opts.path.endsWith('/tokenreviews')) {
        const username = script.users[body.spec.token ?? ''];
        return {
          status: username
            ? { authenticated: true, user: { username, groups: ['system:authenticated'] } }
            : { authenticated: false, error: 'invalid bearer token' },
        } as T;
      }
      return { status: { allowed: script.allowed.has(body.spec.user ?? '') } } as T;
    },
  };
  return {
    client,
    sent,
    reviews: (kind: string) => sent.filter((s) => s.path.endsWith(`/${kind}`)).length,
    /** Holds every answer until the returned function is called. */
    hold: () => {
      gate = new Promise((resolve) => (release = resolve));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

const bearer = (token: string): string => `Bearer ${token}`;
const PROMETHEUS = 'system:serviceaccount:monitoring:prometheus';

describe('bearerToken', () => {
  it('reads a Bearer Authorization header, whatever the scheme’s case, and nothing else', () => {
    assert.equal(bearerToken('Bearer abc.def'), 'abc.def');
    assert.equal(bearerToken('bearer abc'), 'abc');
    for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearer a b'])
      assert.equal(bearerToken(header), undefined, String(header));
  });
});

describe('metrics authorizer', () => {
  it('allows a token whose user may get /metrics, asking with its user, groups and the path', async () => {
    const api = reviewer({ users: { good: PROMETHEUS }, allowed: new Set([PROMETHEUS]) });
    const authorize = metricsAuthorizer({ client: api.client, log });
    assert.deepEqual(await authorize(bearer('good')), { allowed: true });
    const [tokenReview, accessReview] = api.sent;
    assert.ok(tokenReview && accessReview);
    assert.equal(tokenReview.method, 'POST');
    assert.equal(tokenReview.path, '/apis/authentication.k8s.io/v1/tokenreviews');
    assert.deepEqual((tokenReview.body as { spec: unknown }).spec, { token: 'good' });
    assert.equal(accessReview.path, '/apis/authorization.k8s.io/v1/subjectaccessreviews');
    assert.deepEqual((accessReview.body as { spec: unknown }).spec, {
      user: PROMETHEUS,
      groups: ['system:authenticated'],
      nonResourceAttributes: { path: '/metrics', verb: 'get' },
    });
  });

  it('answers 401 without a token or with one the API server does not accept, 403 to a user not allowed', async () => {
    const api = reviewer({ users: { other: 'system:serviceaccount:x:y' }, allowed: new Set() });
    const authorize = metricsAuthorizer({ client: api.client, log });
    const code = (d: AccessDecision): number => (d.allowed ? 200 : d.code);
    assert.equal(code(await authorize(undefined)), 401);
    assert.equal(code(await authorize('Basic dXNlcjpwYXNz')), 401);
    assert.equal(api.sent.length, 0, 'no token, no review');
    assert.equal(code(await authorize(bearer('forged'))), 401);
    const denied = await authorize(bearer('other'));
    assert.deepEqual(denied, {
      allowed: false,
      code: 403,
      message:
        'Forbidden: system:serviceaccount:x:y may not get /metrics (RBAC: nonResourceURLs ["/metrics"], verb get)',
    });
  });

  it('remembers a decision by the token’s hash: allowed for 2 minutes, refused for 10 s', async () => {
    let now = 0;
    const api = reviewer({
      users: { good: PROMETHEUS, other: 'someone' },
      allowed: new Set([PROMETHEUS]),
    });
    const authorize = metricsAuthorizer({ client: api.client, log, now: () => now });
    await authorize(bearer('good'));
    await authorize(bearer('other'));
    now = DECISION_CACHE_LIMITS.deniedTtlMs - 1;
    await authorize(bearer('other'));
    assert.equal(api.reviews('tokenreviews'), 2);
    now = DECISION_CACHE_LIMITS.deniedTtlMs;
    await authorize(bearer('other'));
    assert.equal(api.reviews('tokenreviews'), 3, 'the refused token was asked about again');
    // A scrape every 30 s: three of four cost nothing.
    for (now = 30_000; now < DECISION_CACHE_LIMITS.allowedTtlMs; now += 30_000)
      assert.deepEqual(await authorize(bearer('good')), { allowed: true });
    assert.equal(api.reviews('tokenreviews'), 3);
    now = DECISION_CACHE_LIMITS.allowedTtlMs;
    await authorize(bearer('good'));
    assert.equal(api.reviews('tokenreviews'), 4, 'expired: asked again');
  });

  it('answers 503 when the API server cannot answer, 500 when it refuses the operator, and keeps neither', async () => {
    const script: Script = { users: { good: PROMETHEUS }, allowed: new Set([PROMETHEUS]) };
    const api = reviewer(script);
    const authorize = metricsAuthorizer({ client: api.client, log });
    script.failure = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {
      code: 'ECONNREFUSED',
    });
    const unavailable = await authorize(bearer('good'));
    assert.equal(!unavailable.allowed && unavailable.code, 503);
    script.failure = new ApiError(
      403,
      { kind: 'Status', code: 403, reason: 'Forbidden', message: 'cannot create tokenreviews' },
      'create',
      '/apis/authentication.k8s.io/v1/tokenreviews',
    );
    assert.deepEqual(await authorize(bearer('good')), {
      allowed: false,
      code: 500,
      message:
        "metrics: the API server refused the operator's token review (403 Forbidden): the operator needs create on tokenreviews and subjectaccessreviews",
    });
    delete script.failure;
    assert.deepEqual(await authorize(bearer('good')), { allowed: true }, 'not cached: asked again');
  });

  it('shares one review among concurrent scrapes with a token, and bounds distinct tokens under review', async () => {
    const users = Object.fromEntries(['a', 'b', 'c', 'd', 'e'].map((t) => [t, `user-${t}`]));
    const api = reviewer({ users, allowed: new Set(Object.values(users)) });
    const authorize = metricsAuthorizer({ client: api.client, log });
    const release = api.hold();
    const same = Promise.all([1, 2, 3].map(() => authorize(bearer('a'))));
    const others = Promise.all(['b', 'c', 'd'].map((t) => authorize(bearer(t))));
    const fifth = await authorize(bearer('e'));
    assert.deepEqual(fifth, {
      allowed: false,
      code: 503,
      message: 'metrics: too many token reviews at once; try again',
    });
    release();
    assert.deepEqual(await same, [{ allowed: true }, { allowed: true }, { allowed: true }]);
    await others;
    assert.equal(api.reviews('tokenreviews'), 4, 'one review per token');
    assert.deepEqual(await authorize(bearer('e')), { allowed: true }, 'room again');
  });
});

describe('DecisionCache', () => {
  it('holds at most maxEntries, dropping the oldest', () => {
    const cache = new DecisionCache({ ...DECISION_CACHE_LIMITS, maxEntries: 2 }, () => 0);
    cache.set('a', { allowed: true });
    cache.set('b', { allowed: true });
    cache.set('c', { allowed: false, code: 403, message: 'no' });
    assert.equal(cache.size, 2);
    assert.equal(cache.get('a'), undefined);
    assert.deepEqual(cache.get('b'), { allowed: true });
  });
});
