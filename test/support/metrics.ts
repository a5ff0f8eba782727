// Reading the operator's /metrics in tests with the Prometheus project's own tools, built from Go
// modules: `metrics-parse` (Prometheus's scrape parser, chosen by Content-Type) turns the
// exposition into samples, and `promtool check metrics` lints the text format's names and help.
// A secure metrics port is scraped as a ServiceMonitor with insecureSkipVerify and a bearer token
// scrapes it: HTTPS, the certificate taken as is, the token in the Authorization header.
import { execFileSync } from 'node:child_process';
import { request } from 'node:https';
import { join } from 'node:path';
import { toolsBinDir } from '../../hack/cluster/cluster.ts';

export interface Sample<Value = number> {
  name: string;
  labels: Record<string, string>;
  value: Value;
  /** OpenMetrics only: the exemplar attached to this sample, if any. */
  exemplar?: { labels: Record<string, string>; value: Value };
}

/** A line of metrics-parse: NaN and ±Inf arrive as the strings "NaN", "Infinity", "-Infinity". */
type RawSample = Sample<number | string>;

export interface Scrape {
  contentType: string;
  body: string;
  samples: Sample[];
  /** The value of the sample named `name` whose labels include `labels`; 0 when there is none. */
  value(name: string, labels?: Record<string, string>): number;
  /** The sum of the samples named `name` whose labels pass `where`. */
  total(name: string, where?: (labels: Record<string, string>) => boolean): number;
}

/** Where /metrics is: a plain port, or a secure one and the token to show it. */
export type MetricsTarget = number | { port: number; secure: true; token?: string };

export interface MetricsAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** GET /metrics (or `path`) on `target`, whatever the answer. */
export async function getMetrics(
  target: MetricsTarget,
  accept = 'text/plain',
  path = '/metrics',
): Promise<MetricsAnswer> {
  if (typeof target === 'number') {
    const res = await fetch(`http://127.0.0.1:${String(target)}${path}`, { headers: { accept } });
    return {
      status: res.status,
      contentType: res.headers.get('content-type') ?? '',
      body: await res.text(),
    };
  }
  const headers = { accept, ...(target.token ? { authorization: `Bearer ${target.token}` } : {}) };
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: target.port, path, headers, rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'] ?? '',
            body,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export async function scrape(target: MetricsTarget, accept = 'text/plain'): Promise<Scrape> {
  const { status, contentType, body } = await getMetrics(target, accept);
  if (status !== 200) throw new Error(`/metrics answered ${String(status)}: ${body}`);
  const samples = parseExposition(contentType, body);
  return {
    contentType,
    body,
    samples,
    value: (name, labels = {}) =>
      samples.find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )?.value ?? 0,
    total: (name, where = () => true) =>
      samples.filter((s) => s.name === name && where(s.labels)).reduce((n, s) => n + s.value, 0),
  };
}

/** The samples of an exposition as Prometheus parses it when scraping with this Content-Type. */
export function parseExposition(contentType: string, body: string): Sample[] {
  return execFileSync(join(toolsBinDir(), 'metrics-parse'), [contentType], {
    input: body,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean)
    .map((line): Sample => {
      const { name, labels, value, exemplar } = JSON.parse(line) as RawSample;
      const sample: Sample = { name, labels, value: Number(value) };
      if (exemplar) sample.exemplar = { labels: exemplar.labels, value: Number(exemplar.value) };
      return sample;
    });
}

/** `promtool check metrics` on a text exposition; throws with promtool's findings, if any. */
export function promtoolCheck(textExposition: string): void {
  execFileSync(join(toolsBinDir(), 'promtool'), ['check', 'metrics'], {
    input: textExposition,
    stdio: 'pipe',
  });
}
