// Reading the operator's /metrics in tests with the Prometheus project's own tools, built from Go
// modules: `metrics-parse` (Prometheus's scrape parser, chosen by Content-Type) turns the
// exposition into samples, and `promtool check metrics` lints the text format's names and help.
import { execFileSync } from 'node:child_process';
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

export async function scrape(port: number, accept = 'text/plain'): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${String(port)}/metrics`, { headers: { accept } });
  if (!res.ok) throw new Error(`/metrics answered ${String(res.status)}`);
  const contentType = res.headers.get('content-type') ?? '';
  const body = await res.text();
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
