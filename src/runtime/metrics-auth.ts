// Who may read /metrics on the secure metrics port, decided by the API server as
// controller-runtime's WithAuthenticationAndAuthorization filter and kube-rbac-proxy decide: the
// bearer token goes to a TokenReview, the user it names to a SubjectAccessReview for `get` on the
// non-resource URL /metrics (what a ClusterRole's `nonResourceURLs: ["/metrics"]` grants).
// Decisions are cached per token, by its hash, so a Prometheus scraping every 30 s costs the API
// server two requests every 2 minutes, not two a scrape.
import { createHash } from 'node:crypto';
import type { AccessDecision, Authorizer } from '../http/server.ts';
import { ApiError } from '../kube/errors.ts';
import {
  SUBJECT_ACCESS_REVIEWS,
  TOKEN_REVIEWS,
  resource,
  type Requester,
  type UserInfo,
} from '../kube/resource.ts';
import { errorText, type Logger } from '../telemetry/logger.ts';

export const METRICS_PATH = '/metrics';

export interface DecisionCacheLimits {
  /** How long an allowed token stays allowed without asking again: a revoked one works this long. */
  allowedTtlMs: number;
  /** How long a refused token (401, 403) stays refused: a binding just made takes this long. */
  deniedTtlMs: number;
  /** Tokens remembered; past it the oldest goes. */
  maxEntries: number;
  /** Distinct tokens under review at once; past it 503, so a flood of tokens cannot flood the API server. */
  maxReviewsInFlight: number;
}

export const DECISION_CACHE_LIMITS: DecisionCacheLimits = {
  allowedTtlMs: 2 * 60_000,
  deniedTtlMs: 10_000,
  maxEntries: 256,
  maxReviewsInFlight: 4,
};

/** Decisions by key (a token's hash), each until it expires; bounded, the oldest dropped first. */
export class DecisionCache {
  private readonly entries = new Map<string, { decision: AccessDecision; expires: number }>();
  private readonly limits: DecisionCacheLimits;
  private readonly now: () => number;

  constructor(limits: DecisionCacheLimits, now: () => number = Date.now) {
    this.limits = limits;
    this.now = now;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): AccessDecision | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expires > this.now()) return entry.decision;
    this.entries.delete(key);
    return undefined;
  }

  /** Remembers an allowed or refused (401, 403) decision; errors are not decisions and are not kept. */
  set(key: string, decision: AccessDecision): void {
    let ttl: number;
    if (decision.allowed) ttl = this.limits.allowedTtlMs;
    else if (decision.code === 401 || decision.code === 403) ttl = this.limits.deniedTtlMs;
    else return;
    this.entries.delete(key);
    if (this.entries.size >= this.limits.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { decision, expires: this.now() + ttl });
  }
}

/** The bearer token of an Authorization header, or undefined when it carries none. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  return match?.[1];
}

export interface MetricsAuthorizerOptions {
  /** The Manager's client: the reviews are counted and exported with its other requests. */
  client: Requester;
  log: Logger;
  limits?: Partial<DecisionCacheLimits>;
  now?: () => number;
}

/** An Authorizer for the metrics port, backed by the API server's reviews and a decision cache. */
export function metricsAuthorizer(options: MetricsAuthorizerOptions): Authorizer {
  const limits = { ...DECISION_CACHE_LIMITS, ...options.limits };
  const cache = new DecisionCache(limits, options.now);
  const inFlight = new Map<string, Promise<AccessDecision>>();
  const review = (token: string): Promise<AccessDecision> =>
    reviewToken(options.client, options.log, token);

  return (authorization) => {
    const token = bearerToken(authorization);
    if (token === undefined) {
      return Promise.resolve({
        allowed: false,
        code: 401,
        message: 'Unauthorized: /metrics needs a bearer token (Authorization: Bearer <token>)',
      });
    }
    // The hash, never the token, is what stays in memory.
    const key = createHash('sha256').update(token).digest('base64');
    const cached = cache.get(key);
    if (cached) return Promise.resolve(cached);
    const pending = inFlight.get(key);
    if (pending) return pending;
    if (inFlight.size >= limits.maxReviewsInFlight) {
      return Promise.resolve({
        allowed: false,
        code: 503,
        message: 'metrics: too many token reviews at once; try again',
      });
    }
    const decided = review(token).then((decision) => {
      cache.set(key, decision);
      return decision;
    });
    const shared = decided.finally(() => inFlight.delete(key));
    inFlight.set(key, shared);
    return shared;
  };
}

/** The API server's decision on `token`: TokenReview, then SubjectAccessReview for its user. */
async function reviewToken(client: Requester, log: Logger, token: string): Promise<AccessDecision> {
  try {
    const authn = await resource(client, TOKEN_REVIEWS).create({
      apiVersion: TOKEN_REVIEWS.apiVersion,
      kind: TOKEN_REVIEWS.kind,
      metadata: { name: '' },
      spec: { token },
    });
    const user = authn.status?.user;
    if (!authn.status?.authenticated || !user) {
      return {
        allowed: false,
        code: 401,
        message: 'Unauthorized: the bearer token is not valid',
      };
    }
    const authz = await resource(client, SUBJECT_ACCESS_REVIEWS).create({
      apiVersion: SUBJECT_ACCESS_REVIEWS.apiVersion,
      kind: SUBJECT_ACCESS_REVIEWS.kind,
      metadata: { name: '' },
      spec: {
        ...userFields(user),
        nonResourceAttributes: { path: METRICS_PATH, verb: 'get' },
      },
    });
    if (authz.status?.allowed) return { allowed: true };
    return {
      allowed: false,
      code: 403,
      message: `Forbidden: ${user.username ?? 'this user'} may not get ${METRICS_PATH} (RBAC: nonResourceURLs ["${METRICS_PATH}"], verb get)`,
    };
  } catch (err) {
    // The API server's answer names no token (the reviews' bodies are never in an error).
    log.warn({ err: errorText(err) }, 'metrics: could not review a bearer token');
    if (!(err instanceof ApiError) || err.code >= 500 || err.code === 429) {
      return {
        allowed: false,
        code: 503,
        message: 'metrics: the API server could not review the token; try again',
      };
    }
    const hint =
      err.code === 403
        ? ': the operator needs create on tokenreviews and subjectaccessreviews'
        : '';
    return {
      allowed: false,
      code: 500,
      message: `metrics: the API server refused the operator's token review (${String(err.code)} ${err.reason})${hint}`,
    };
  }
}

/** A TokenReview's user as a SubjectAccessReview's spec names it (`user`, not `username`). */
function userFields(user: UserInfo): Omit<UserInfo, 'username'> & { user?: string } {
  return {
    ...(user.username !== undefined ? { user: user.username } : {}),
    ...(user.uid !== undefined ? { uid: user.uid } : {}),
    ...(user.groups !== undefined ? { groups: user.groups } : {}),
    ...(user.extra !== undefined ? { extra: user.extra } : {}),
  };
}
