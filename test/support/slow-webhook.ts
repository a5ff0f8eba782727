// A validating admission webhook that holds the writes of one named Deployment for a while before
// allowing them: a reconcile made slow by the API server itself, with nothing in the operator
// changed. The API server calls it over HTTPS with a certificate made here.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient } from '../../src/kube/client.ts';

export interface SlowWebhook {
  /** Wall-clock ms at which each held write arrived, and at which it was let through. */
  arrivals: number[];
  answered: number[];
  remove(): Promise<void>;
}

interface AdmissionReview {
  request: { uid: string; name?: string; object?: { metadata?: { name?: string } } };
}

async function selfSignedCertificate(): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'slow-webhook-'));
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
      '/CN=slow-webhook',
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

/** Holds each create or update of Deployment `namespace/name` for `delayMs`, then allows it. */
export async function startSlowWebhook(
  admin: KubeClient,
  target: { namespace: string; name: string; delayMs: number },
): Promise<SlowWebhook> {
  const { cert, key } = await selfSignedCertificate();
  const arrivals: number[] = [];
  const answered: number[] = [];
  const server = createServer({ cert, key }, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const review = JSON.parse(body) as AdmissionReview;
      const name = review.request.name ?? review.request.object?.metadata?.name;
      const held = name === target.name;
      if (held) arrivals.push(Date.now());
      void sleep(held ? target.delayMs : 0).then(() => {
        if (held) answered.push(Date.now());
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: { uid: review.request.uid, allowed: true },
          }),
        );
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('webhook has no port');
  const configName = `slow-${target.namespace}`;
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
          name: 'slow.echo-tests.example.com',
          clientConfig: {
            url: `https://127.0.0.1:${String(address.port)}/`,
            caBundle: Buffer.from(cert).toString('base64'),
          },
          rules: [
            {
              apiGroups: ['apps'],
              apiVersions: ['v1'],
              operations: ['CREATE', 'UPDATE'],
              resources: ['deployments'],
            },
          ],
          namespaceSelector: {
            matchLabels: { 'kubernetes.io/metadata.name': target.namespace },
          },
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          failurePolicy: 'Fail',
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
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}
