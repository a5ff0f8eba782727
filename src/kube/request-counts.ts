// Counts of API requests by verb, resource and status code, fed by KubeClient's onResponse.
// The operator's own account of its API usage: tests assert on it (zero writes in steady state)
// and the metrics endpoint exports the same numbers.
import type { ResponseEvent } from './client.ts';
import { isReview, isWriteVerb } from './request-info.ts';

export interface RequestCount {
  verb: string;
  resource: string;
  code: number;
  count: number;
}

export class RequestCounts {
  private readonly counts = new Map<string, RequestCount>();

  readonly record = (event: ResponseEvent): void => {
    const key = `${event.verb} ${event.resource} ${String(event.code)}`;
    const entry = this.counts.get(key);
    if (entry) entry.count++;
    else
      this.counts.set(key, {
        verb: event.verb,
        resource: event.resource,
        code: event.code,
        count: 1,
      });
  };

  all(): RequestCount[] {
    return [...this.counts.values()].map((c) => ({ ...c }));
  }

  /**
   * Requests that change state (create, update, patch, apply, delete), whatever their answer;
   * reviews (/metrics' TokenReviews and SubjectAccessReviews) store nothing and are not counted.
   */
  writes(): number {
    return this.all()
      .filter((c) => isWriteVerb(c.verb) && !isReview(c.resource))
      .reduce((n, c) => n + c.count, 0);
  }

  total(): number {
    return this.all().reduce((n, c) => n + c.count, 0);
  }
}
