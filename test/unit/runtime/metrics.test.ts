import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from '../../../src/runtime/workqueue.ts';
import { Metrics } from '../../../src/runtime/metrics.ts';

function metrics(): { m: Metrics; queue: WorkQueue } {
  const queue = new WorkQueue();
  const m = new Metrics({
    controller: 'echo',
    concurrency: 4,
    server: 'https://10.0.0.1:6443',
    queue: () => queue,
    cacheSizes: () => ({ echoes: 3, deployments: 2 }),
    ready: () => true,
  });
  return { m, queue };
}

describe('Metrics', () => {
  it('answers in OpenMetrics only when asked to', async () => {
    const { m } = metrics();
    const text = await m.render('text/plain');
    assert.match(text.contentType, /^text\/plain; version=0\.0\.4/);
    const open = await m.render('application/openmetrics-text; version=1.0.0,text/plain;q=0.5');
    assert.match(open.contentType, /^application\/openmetrics-text/);
    assert.match(open.body, /# EOF\n$/);
  });

  it('keeps counter names whole in the text format after an OpenMetrics scrape', async () => {
    const { m } = metrics();
    m.recreated();
    await m.render('application/openmetrics-text');
    assert.match(
      (await m.render('text/plain')).body,
      /^echo_operator_deployment_recreates_total 1$/m,
    );
  });

  it('links reconcile durations to their traces with exemplars, in OpenMetrics only', async () => {
    const { m } = metrics();
    const observer = m.controllerObserver();
    observer.reconciled?.('success', 0.003, '4bf92f3577b34da6a3ce929d0e0e4736');
    observer.reconciled?.('success', 0.2);
    const open = (await m.render('application/openmetrics-text')).body;
    assert.match(
      open,
      /^controller_runtime_reconcile_time_seconds_bucket\{le="0.005",controller="echo"\} 1 # \{trace_id="4bf92f3577b34da6a3ce929d0e0e4736"\} 0.003 /m,
    );
    assert.match(
      open,
      /^controller_runtime_reconcile_time_seconds_bucket\{le="0.25",controller="echo"\} 2$/m,
    );
    assert.doesNotMatch((await m.render('text/plain')).body, /trace_id/);
  });

  it('exports counters at zero before their first event, for rate() and alerts', async () => {
    const { m } = metrics();
    m.controllerObserver();
    m.queueObserver();
    m.informerObserver('echoes');
    const body = (await m.render('text/plain')).body;
    for (const series of [
      'controller_runtime_reconcile_errors_total{controller="echo"} 0',
      'controller_runtime_reconcile_total{controller="echo",result="error"} 0',
      'workqueue_retries_total{name="echo",controller="echo"} 0',
      'echo_operator_informer_failures_total{informer="echoes"} 0',
      'echo_operator_informer_relists_total{informer="echoes"} 0',
    ])
      assert.ok(body.includes(`${series}\n`), series);
  });

  it('reads gauges from their sources at scrape time', async () => {
    const { m, queue } = metrics();
    queue.add('a');
    queue.add('b');
    const { body } = await m.render(undefined);
    assert.match(body, /^workqueue_depth\{name="echo",controller="echo"\} 2$/m);
    assert.match(body, /^echo_operator_informer_objects\{informer="echoes"\} 3$/m);
    assert.match(body, /^controller_runtime_max_concurrent_reconciles\{controller="echo"\} 4$/m);
    assert.match(body, /^echo_operator_ready 1$/m);
  });

  it('drops the desired-replicas series of a deleted Echo', async () => {
    const { m } = metrics();
    m.desired('team/web', 3);
    assert.match(
      (await m.render(undefined)).body,
      /echo_desired_replicas\{namespace="team",name="web"\} 3/,
    );
    m.desired('team/web', undefined);
    assert.doesNotMatch((await m.render(undefined)).body, /name="web"/);
  });

  it('labels requests by template, never by object name', async () => {
    const { m } = metrics();
    m.onResponse({
      verb: 'get',
      resource: 'configmaps',
      pathTemplate: '/api/v1/namespaces/{namespace}/configmaps/{name}',
      method: 'GET',
      code: 404,
      durationSeconds: 0.01,
    });
    const { body } = await m.render(undefined);
    assert.match(
      body,
      /rest_client_requests_total\{code="404",method="GET",host="10\.0\.0\.1:6443"\} 1/,
    );
    assert.match(
      body,
      /echo_operator_kubernetes_requests_total\{verb="get",resource="configmaps",path="\/api\/v1\/namespaces\/\{namespace\}\/configmaps\/\{name\}",code="404"\} 1/,
    );
  });
});
