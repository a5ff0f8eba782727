// The API server's audit log, read in one place: for the shared test cluster (global-setup starts
// it with one line per request, JSON), the API server's own account of who did what, whatever the
// client says it did; and for the benchmark's own cluster, streamed.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { KubeClient } from '../../src/kube/client.ts';
import { isNotFound } from '../../src/kube/errors.ts';
import { clusterKubeconfig, eventually } from './kube.ts';

/** The fields of an audit event the tests and the benchmark read. */
export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  user: { username: string };
  impersonatedUser?: {
    username: string;
    uid?: string;
    groups?: string[];
    extra?: Record<string, string[]>;
  };
  userAgent?: string;
  requestReceivedTimestamp: string;
  objectRef?: {
    apiGroup?: string;
    namespace?: string;
    resource?: string;
    subresource?: string;
    name?: string;
  };
  responseStatus?: { code?: number; message?: string };
}

/**
 * The events of the log's `lines` that include `needle` (a cheap filter before parsing), in the
 * log's order. Long-running requests (watches) log twice, at start and end, under one audit id.
 */
export async function* auditEventsIn(
  lines: Iterable<string> | AsyncIterable<string>,
  needle: string,
): AsyncGenerator<AuditEvent> {
  for await (const line of lines) {
    if (line.includes(needle)) yield JSON.parse(line) as AuditEvent;
  }
}

/** The events of the audit log at `path` that include `needle`, streamed: for a large log. */
export function readAuditLog(path: string, needle: string): AsyncGenerator<AuditEvent> {
  return auditEventsIn(
    createInterface({ input: createReadStream(path), crlfDelay: Infinity }),
    needle,
  );
}

const auditLog = (): string => join(dirname(clusterKubeconfig()), 'audit.log');

/**
 * The events of the shared test cluster's audit log that include `needle`, every request answered
 * so far among them: a request the admin makes now is waited for in the log first (entries are
 * written as requests complete, so those answered before it are there too).
 */
export async function auditEvents(admin: KubeClient, needle: string): Promise<AuditEvent[]> {
  const marker = `audit-marker-${randomBytes(4).toString('hex')}`;
  await admin
    .request({ path: `/api/v1/namespaces/default/configmaps/${marker}` })
    .catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  const text = await eventually(
    'the audit log to hold a request made after the calls counted',
    async () => {
      const content = await readFile(auditLog(), 'utf8');
      return content.includes(marker) ? content : undefined;
    },
  );
  const events: AuditEvent[] = [];
  for await (const event of auditEventsIn(text.split('\n'), needle)) events.push(event);
  return events;
}

/**
 * The requests `username` sent from `since` (wall-clock ms) on, in the log's order, each as
 * `verb resource[/subresource] [name]` (`patch deployments e1`, `create events`).
 */
export async function auditedCalls(
  admin: KubeClient,
  username: string,
  since: number,
): Promise<string[]> {
  return (await auditedRequests(admin, username, since)).map((request) => request.call);
}

/**
 * The requests `username` sent from `since` (wall-clock ms) on, in the log's order: each as
 * auditedCalls names it, with its User-Agent; every request answered so far (see auditEvents).
 */
export async function auditedRequests(
  admin: KubeClient,
  username: string,
  since: number,
): Promise<{ call: string; userAgent: string | undefined }[]> {
  const seen = new Set<string>();
  const calls: { call: string; userAgent: string | undefined }[] = [];
  for (const event of await auditEvents(admin, username)) {
    if (event.user.username !== username || seen.has(event.auditID)) continue;
    // Long-running requests (watches) log twice, at start and end, under one id.
    seen.add(event.auditID);
    if (Date.parse(event.requestReceivedTimestamp) < since) continue;
    const r = event.objectRef ?? {};
    const resource = r.subresource ? `${r.resource ?? ''}/${r.subresource}` : (r.resource ?? '');
    calls.push({
      call: [event.verb, resource, r.name].filter(Boolean).join(' '),
      userAgent: event.userAgent,
    });
  }
  return calls;
}
