// A validating admission webhook that holds writes for a while, or until it is removed, before
// allowing them: a write made slow by the API server itself (a reconcile, with nothing in the
// operator changed), or one that holds a seat of API Priority and Fairness. The API server calls
// it over HTTPS with a certificate made here.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient } from '../../src/kube/client.ts';

export interface HoldingWebhook {
  /** Wall-clock ms at which each held write arrived, and at which it was let through. */
  arrivals: number[];
  answered: number[];
  remove(): Promise<void>;
}

interface AdmissionReview {
  request: { uid: string; name?: string; object?: { metadata?: { name?: string } } };
}

async function selfSignedCertificate(): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'holding-webhook-'));
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=holding-webhook',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    const [cert, key] = await Promise.all(
      ['cert.pem', 'key.pem'].map((f) => readFile(join(dir, f), 'utf8')),
    );
    return { cert: cert ?? '', key: key ?? '' };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface HeldWrites {
  namespace: string;
  /** The objects whose writes reach the webhook: Deployments unless given. */
  resource?: { apiGroup: string; resource: string };
  /** CREATE and UPDATE unless given. */
  operations?: ('CREATE' | 'UPDATE')[];
  /** Only the object of this name is held (others are allowed at once); any, if not given. */
  name?: string;
  /** Only objects with these labels reach the webhook. */
  labels?: Record<string, string>;
  /** How long each write is held; Infinity: until the webhook is removed. */
  delayMs: number;
  /**
   * Fail (the default): a write the webhook does not answer within 30 s is refused; Ignore: it
   * goes ahead.
   */
  failurePolicy?: 'Fail' | 'Ignore';
}

/** Holds each write `target` names in `target.namespace` for `delayMs`, then allows it. */
export async function startHoldingWebhook(
  admin: KubeClient,
  target: HeldWrites,
): Promise<HoldingWebhook> {
  const { cert, key } = await selfSignedCertificate();
  const arrivals: number[] = [];
  const answered: number[] = [];
  const removed = new AbortController();
  const hold = (ms: number): Promise<unknown> =>
    Number.isFinite(ms)
      ? sleep(ms, undefined, { signal: removed.signal })
      : new Promise((_resolve, reject) => {
          removed.signal.addEventListener('abort', () => {
            reject(new Error('removed'));
          });
        });
  const server = createServer({ cert, key }, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const review = JSON.parse(body) as AdmissionReview;
      const name = review.request.name ?? review.request.object?.metadata?.name;
      const held = target.name === undefined || name === target.name;
      if (held) arrivals.push(Date.now());
      hold(held ? target.delayMs : 0).then(
        () => {
          if (held) answered.push(Date.now());
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify({
              apiVersion: 'admission.k8s.io/v1',
              kind: 'AdmissionReview',
              response: { uid: review.request.uid, allowed: true },
            }),
          );
        },
        () => undefined,
      ); // removed while held: its connection is closed unanswered
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('webhook has no port');
  const configName = `hold-${target.namespace}`;
  const { apiGroup, resource } = target.resource ?? { apiGroup: 'apps', resource: 'deployments' };
  const path = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations';
  await admin.request({
    method: 'POST',
    path,
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: configName },
      webhooks: [
        {
          name: 'hold.echo-tests.example.com',
          clientConfig: {
            url: `https://127.0.0.1:${String(address.port)}/`,
            caBundle: Buffer.from(cert).toString('base64'),
          },
          rules: [
            {
              apiGroups: [apiGroup],
              apiVersions: ['v1'],
              operations: target.operations ?? ['CREATE', 'UPDATE'],
              resources: [resource],
            },
          ],
          namespaceSelector: {
            matchLabels: { 'kubernetes.io/metadata.name': target.namespace },
          },
          ...(target.labels ? { objectSelector: { matchLabels: target.labels } } : {}),
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          failurePolicy: target.failurePolicy ?? 'Fail',
          timeoutSeconds: 30,
        },
      ],
    },
  });
  return {
    arrivals,
    answered,
    remove: async () => {
      await admin.request({ method: 'DELETE', path: `${path}/${configName}` });
      removed.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}
