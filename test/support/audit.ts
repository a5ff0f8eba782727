// API calls of one identity, read from the shared test cluster's audit log (global-setup starts it
// with one line per request): the API server's own count, whatever the client says it did.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { KubeClient } from '../../src/kube/client.ts';
import { isNotFound } from '../../src/kube/errors.ts';
import { clusterKubeconfig, eventually } from './kube.ts';

interface AuditEvent {
  auditID: string;
  verb: string;
  user: { username: string };
  userAgent?: string;
  requestReceivedTimestamp: string;
  objectRef?: { resource?: string; subresource?: string; name?: string };
}

const auditLog = (): string => join(dirname(clusterKubeconfig()), 'audit.log');

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
 * auditedCalls names it, with its User-Agent. A request the admin makes now is waited for in the
 * log first: entries are written as requests complete, so those answered before it are there too.
 */
export async function auditedRequests(
  admin: KubeClient,
  username: string,
  since: number,
): Promise<{ call: string; userAgent: string | undefined }[]> {
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
  const seen = new Set<string>();
  const calls: { call: string; userAgent: string | undefined }[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes(username)) continue;
    const event = JSON.parse(line) as AuditEvent;
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
