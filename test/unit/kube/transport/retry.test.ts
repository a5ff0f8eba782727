import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultUserAgent } from '../../../../src/kube/client.ts';
import {
  backoffMs,
  headersTimeoutMs,
  isConnectionLost,
  retryAfterMs,
  retryDelayMs,
  startsBeforeDeadline,
  type AttemptOutcome,
  type RetryPolicy,
} from '../../../../src/kube/transport/retry.ts';

const policy: RetryPolicy = {
  maxAttempts: 10,
  maxRetryAfterMs: 30_000,
  backoffBaseMs: 500,
  backoffCapMs: 10_000,
  deadlineMs: 60_000,
};
const now = Date.parse('2026-11-27T12:00:00Z');
const answer = (method: string, code: number, retryAfter?: string): AttemptOutcome => ({
  method,
  code,
  retryAfter,
});
const errorWith = (code: string, message = 'failed'): Error =>
  Object.assign(new Error(message), { code });
const failed = (method: string, error: unknown): AttemptOutcome => ({ method, error });
/** The wait after the first attempt, with no jitter drawn. */
const delay = (outcome: AttemptOutcome, attempt = 1): number | undefined =>
  retryDelayMs(outcome, attempt, policy, now, 0);

describe('retryAfterMs', () => {
  it('reads delay-seconds', () => {
    assert.equal(retryAfterMs('3', now), 3000);
    assert.equal(retryAfterMs(' 0 ', now), 0);
  });
  it('reads an HTTP date, a past one as no wait', () => {
    assert.equal(retryAfterMs('Fri, 27 Nov 2026 12:00:07 GMT', now), 7000);
    assert.equal(retryAfterMs('Fri, 27 Nov 2026 11:59:00 GMT', now), 0);
  });
  it('ignores what is neither', () => {
    for (const value of [undefined, '', 'soon', '-1', '1.5', '2026-11-27T12:00:07Z']) {
      assert.equal(retryAfterMs(value, now), undefined, String(value));
    }
  });
});

describe('retryDelayMs', () => {
  it('waits the Retry-After of a 429, whatever the verb, a second without one', () => {
    assert.equal(delay(answer('PATCH', 429, '3')), 3000);
    assert.equal(delay(answer('GET', 429, 'Fri, 27 Nov 2026 12:00:05 GMT')), 5000);
    assert.equal(delay(answer('POST', 429)), 1000);
  });
  it('caps a Retry-After', () => {
    assert.equal(delay(answer('GET', 429, '3600')), 30_000);
    assert.equal(delay(answer('GET', 503, 'Fri, 27 Nov 2026 13:00:00 GMT')), 30_000);
  });
  it('retries any 5xx that carries Retry-After, whatever the verb', () => {
    assert.equal(delay(answer('POST', 503, '2')), 2000);
    assert.equal(delay(answer('DELETE', 500, '1')), 1000);
  });
  it('retries a 503 without Retry-After on a read only, with backoff', () => {
    assert.equal(delay(answer('GET', 503)), 500);
    assert.equal(delay(answer('GET', 503), 3), 2000);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      assert.equal(delay(answer(method, 503)), undefined, method);
    }
  });
  it('does not retry other answers', () => {
    for (const code of [400, 401, 403, 404, 409, 410, 422, 500, 502, 504]) {
      assert.equal(delay(answer('GET', code)), undefined, String(code));
    }
  });
  it('retries a read whose connection was lost, with backoff, and never a write', () => {
    const lost = [
      errorWith('ECONNRESET', 'read ECONNRESET'),
      errorWith('UND_ERR_SOCKET', 'other side closed'),
      errorWith('EPIPE'),
      errorWith('UND_ERR_INFO', 'HTTP/2: "GOAWAY" frame received with code 0'),
      new Error('fetch failed', { cause: errorWith('ECONNRESET') }),
    ];
    for (const error of lost) {
      assert.equal(delay(failed('GET', error)), 500, error.message);
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
        assert.equal(delay(failed(method, error)), undefined, `${method} ${error.message}`);
      }
    }
  });
  it('does not retry a timeout, an abort or a refusal', () => {
    for (const code of [
      'UND_ERR_HEADERS_TIMEOUT',
      'UND_ERR_ABORTED',
      'ABORT_ERR',
      'ECONNREFUSED',
    ]) {
      assert.equal(delay(failed('GET', errorWith(code))), undefined, code);
    }
    assert.equal(delay(failed('GET', 'not an error')), undefined);
  });
  it('stops after the last attempt', () => {
    assert.equal(delay(answer('GET', 429, '1'), policy.maxAttempts - 1), 1000);
    assert.equal(delay(answer('GET', 429, '1'), policy.maxAttempts), undefined);
    assert.equal(delay(failed('GET', errorWith('ECONNRESET')), policy.maxAttempts), undefined);
  });
});

describe('backoffMs', () => {
  it('doubles from the base up to the cap', () => {
    const waits = Array.from({ length: 8 }, (_, i) => backoffMs(i + 1, policy, 0));
    assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
  });
  it('adds up to half again at random', () => {
    assert.equal(backoffMs(2, policy, 0.5), 1250);
    assert.ok(backoffMs(6, policy, 0.999_999) < 15_000);
  });
});

describe('the deadline across attempts', () => {
  it('lets a wait begin only when the attempt after it starts before the deadline', () => {
    assert.ok(startsBeforeDeadline(1000, 0, 58_000, policy));
    assert.ok(!startsBeforeDeadline(2000, 0, 58_000, policy));
    assert.ok(!startsBeforeDeadline(0, 0, 60_000, policy));
  });
  it('gives an attempt what is left of the deadline when that is shorter than its timeout', () => {
    assert.equal(headersTimeoutMs(60_000, 0, 0, policy), 60_000);
    assert.equal(headersTimeoutMs(60_000, 0, 45_000, policy), 15_000);
    assert.equal(headersTimeoutMs(10_000, 0, 45_000, policy), 10_000);
    assert.equal(headersTimeoutMs(60_000, 0, 61_000, policy), 1);
  });
  it('ends ten 429s asking 30 s each after the deadline, not after ten waits', () => {
    // Requests answered at once: the waits alone decide when the request ends.
    let clock = 0;
    let attempts = 0;
    for (;;) {
      attempts++;
      const wait = retryDelayMs(answer('GET', 429, '30'), attempts, policy, now, 0);
      if (wait === undefined || !startsBeforeDeadline(wait, 0, clock, policy)) break;
      clock += wait;
    }
    assert.equal(attempts, 2, 'the wait after the second would end past 60 s');
    assert.equal(clock, 30_000);
  });
  it('counts the attempts a 503 without Retry-After gets within a 20 s deadline', () => {
    const short = { ...policy, deadlineMs: 20_000 };
    let clock = 0;
    let attempts = 0;
    for (;;) {
      attempts++;
      const wait = retryDelayMs(answer('GET', 503), attempts, short, now, 0);
      if (wait === undefined || !startsBeforeDeadline(wait, 0, clock, short)) break;
      clock += wait;
    }
    // Waits 0.5, 1, 2, 4, 8 s (15.5 s); the seventh attempt would start at 15.5 + 10 s.
    assert.equal(attempts, 6);
    assert.equal(clock, 15_500);
  });
});

describe('isConnectionLost', () => {
  it('looks through the causes', () => {
    const wrapped = new Error('outer', {
      cause: new Error('middle', { cause: errorWith('EPIPE') }),
    });
    assert.ok(isConnectionLost(wrapped));
    assert.ok(!isConnectionLost(new Error('outer', { cause: errorWith('ENOTFOUND') })));
  });
});

describe('defaultUserAgent', () => {
  it('names the operator, its platform as Go does, and Node', () => {
    assert.equal(
      defaultUserAgent('1.2.3', 'linux', 'x64', 'v24.21.0'),
      'echo-operator/1.2.3 (linux/amd64) node/v24.21.0',
    );
    assert.equal(
      defaultUserAgent('1.2.3', 'darwin', 'arm64', 'v24.21.0'),
      'echo-operator/1.2.3 (darwin/arm64) node/v24.21.0',
    );
    assert.match(defaultUserAgent(), /^echo-operator\/\d+\.\d+\.\d+\S* \(\w+\/\w+\) node\/v24\./);
  });
});
