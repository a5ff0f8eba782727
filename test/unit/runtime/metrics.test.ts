import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_AGING_MS, Priority, WorkQueue } from '../../../src/runtime/workqueue.ts';
import { Metrics, type MetricsSources } from '../../../src/runtime/metrics.ts';
import type { AssignmentStats } from '../../../src/runtime/sharding/assignment.ts';

/** Metrics of two controllers, `echo` and `mirror`, each with its queue. */
function metrics(extra: Partial<MetricsSources> = {}): {
  m: Metrics;
  queue: WorkQueue;
  mirror: WorkQueue;
} {
  const queue = new WorkQueue();
  const mirror = new WorkQueue();
  const m = new Metrics({
    prefix: 'echo_operator_',
    server: 'https://10.0.0.1:6443',
    queues: () =>
      new Map([
        ['echo', queue],
        ['mirror', mirror],
      ]),
    cacheSizes: () => ({ echoes: 3, deployments: 2 }),
    ready: () => true,
    ...extra,
  });
  return { m, queue, mirror };
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
    m.controllerObserver('echo', 4).reconciled?.('error', 0.01);
    await m.render('application/openmetrics-text');
    const { body } = await m.render('text/plain');
    assert.match(body, /^controller_runtime_reconcile_errors_total\{controller="echo"\} 1$/m);
    assert.match(
      body,
      /^controller_runtime_reconcile_total\{controller="echo",result="error"\} 1$/m,
    );
  });

  it('links reconcile durations to their traces with exemplars, in OpenMetrics only', async () => {
    const { m } = metrics();
    const observer = m.controllerObserver('echo', 4);
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
    m.controllerObserver('echo', 4);
    m.queueObserver('echo');
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
    m.controllerObserver('echo', 4);
    queue.add('a');
    queue.add('b');
    const { body } = await m.render(undefined);
    assert.match(body, /^workqueue_depth\{name="echo",controller="echo",priority="0"\} 2$/m);
    assert.match(body, /^workqueue_depth\{name="echo",controller="echo",priority="-100"\} 0$/m);
    assert.match(body, /^echo_operator_informer_objects\{informer="echoes"\} 3$/m);
    assert.match(body, /^controller_runtime_max_concurrent_reconciles\{controller="echo"\} 4$/m);
    assert.match(body, /^echo_operator_ready 1$/m);
  });

  it('reports the depth and the longest wait of each priority', async () => {
    const clock = { now: 0 };
    const queue = new WorkQueue(undefined, {}, undefined, { now: () => clock.now });
    const m = new Metrics({
      prefix: 'echo_operator_',
      server: 'https://10.0.0.1:6443',
      queues: () => new Map([['echo', queue]]),
      cacheSizes: () => ({}),
      ready: () => true,
    });
    queue.add('replayed-1', Priority.low);
    queue.add('replayed-2', Priority.low);
    clock.now = 4000;
    queue.add('changed');
    clock.now = 5500;
    const { body } = await m.render(undefined);
    for (const series of [
      'workqueue_depth{name="echo",controller="echo",priority="0"} 1',
      'workqueue_depth{name="echo",controller="echo",priority="-100"} 2',
      'echo_operator_workqueue_longest_wait_seconds{name="echo",controller="echo",priority="0"} 1.5',
      'echo_operator_workqueue_longest_wait_seconds{name="echo",controller="echo",priority="-100"} 5.5',
    ])
      assert.ok(body.includes(`${series}\n`), series);
  });

  it('counts the queue waits past the aging bound in a bucket of their own', async () => {
    const { m } = metrics();
    const echo = m.queueObserver('echo');
    echo.started?.(0.002);
    echo.started?.(DEFAULT_AGING_MS / 1000 - 1);
    echo.started?.(DEFAULT_AGING_MS / 1000 + 1);
    const { body } = await m.render(undefined);
    const bucket = (le: string): string =>
      `workqueue_queue_duration_seconds_bucket{le="${le}",name="echo",controller="echo"}`;
    for (const series of [
      `${bucket('1e-8')} 0`,
      `${bucket('10')} 1`,
      `${bucket(String(DEFAULT_AGING_MS / 1000))} 2`,
      `${bucket('100')} 3`,
      `${bucket('1000')} 3`,
      'workqueue_queue_duration_seconds_count{name="echo",controller="echo"} 3',
    ])
      assert.ok(body.includes(`${series}\n`), series);
  });

  it("labels each controller's queue and reconcile series with its name", async () => {
    const { m, queue, mirror } = metrics();
    const echo = m.controllerObserver('echo', 4);
    const other = m.controllerObserver('mirror', 2);
    const echoQueue = m.queueObserver('echo');
    m.queueObserver('mirror');
    queue.add('a');
    mirror.add('x');
    mirror.add('y');
    mirror.add('z');
    echo.reconciled?.('success', 0.01);
    other.reconciled?.('requeue_after', 0.01);
    other.reconciled?.('requeue_after', 0.01);
    other.activeWorkers?.(2);
    echoQueue.added?.();
    echoQueue.retried?.();
    const { body } = await m.render(undefined);
    for (const series of [
      'workqueue_depth{name="echo",controller="echo",priority="0"} 1',
      'workqueue_depth{name="mirror",controller="mirror",priority="0"} 3',
      'workqueue_depth{name="mirror",controller="mirror",priority="-100"} 0',
      'workqueue_longest_running_processor_seconds{name="mirror",controller="mirror"} 0',
      'workqueue_unfinished_work_seconds{name="echo",controller="echo"} 0',
      'workqueue_adds_total{name="echo",controller="echo"} 1',
      'workqueue_adds_total{name="mirror",controller="mirror"} 0',
      'workqueue_retries_total{name="echo",controller="echo"} 1',
      'workqueue_retries_total{name="mirror",controller="mirror"} 0',
      'controller_runtime_max_concurrent_reconciles{controller="echo"} 4',
      'controller_runtime_max_concurrent_reconciles{controller="mirror"} 2',
      'controller_runtime_reconcile_total{controller="echo",result="success"} 1',
      'controller_runtime_reconcile_total{controller="echo",result="requeue_after"} 0',
      'controller_runtime_reconcile_total{controller="mirror",result="requeue_after"} 2',
      'controller_runtime_reconcile_total{controller="mirror",result="success"} 0',
      'controller_runtime_active_workers{controller="mirror"} 2',
      'controller_runtime_reconcile_time_seconds_count{controller="mirror"} 2',
    ])
      assert.ok(body.includes(`${series}\n`), series);
  });

  it("applies the prefix to the runtime's own series, and to none of controller-runtime's", async () => {
    const { m } = metrics({
      prefix: 'mirror_',
      connections: () => ({ open: 1, max: 3 }),
      leader: { name: 'mirror-lock', leading: () => true },
    });
    assert.equal(m.prefix, 'mirror_');
    m.controllerObserver('mirror', 1);
    m.informerObserver('configmaps');
    m.onResponse({
      verb: 'get',
      resource: 'configmaps',
      pathTemplate: '/api/v1/namespaces/{namespace}/configmaps/{name}',
      method: 'GET',
      code: 200,
      durationSeconds: 0.01,
    });
    const { body } = await m.render(undefined);
    for (const series of [
      'mirror_ready 1',
      'mirror_informer_objects{informer="echoes"} 3',
      'mirror_informer_watches_total{informer="configmaps"} 0',
      'mirror_kubernetes_connections 1',
      'mirror_kubernetes_connections_max 3',
      'mirror_kubernetes_requests_total{verb="get",resource="configmaps",path="/api/v1/namespaces/{namespace}/configmaps/{name}",code="200"} 1',
      'mirror_kubernetes_request_duration_seconds_count{verb="get",resource="configmaps"} 1',
      'leader_election_master_status{name="mirror-lock"} 1',
      'controller_runtime_reconcile_errors_total{controller="mirror"} 0',
      'rest_client_requests_total{code="200",method="GET",host="10.0.0.1:6443"} 1',
    ])
      assert.ok(body.includes(`${series}\n`), series);
    assert.doesNotMatch(body, /^echo_operator_/m);
  });

  it('registers what a controller adds in both registries', () => {
    const { m } = metrics();
    assert.deepEqual(m.registers, [m.text, m.openMetrics]);
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

describe('Metrics: sharding', () => {
  it('renders none of the sharding series without a sharding source', async () => {
    const { m } = metrics();
    assert.doesNotMatch((await m.render('text/plain')).body, /sharding/);
  });

  it('renders the buckets held and draining, the counters, and the objects of each bucket held', async () => {
    const stats: AssignmentStats = {
      held: 3,
      draining: 1,
      acquired: 5,
      takeovers: 2,
      handovers: 1,
      lost: 1,
    };
    let objects = new Map([
      [0, 10],
      [7, 2],
      [9, 0],
    ]);
    const { m } = metrics({ sharding: { stats: () => stats, objects: () => objects } });
    const lines = async () =>
      (await m.render('text/plain')).body
        .split('\n')
        .filter((l) => l.startsWith('echo_operator_sharding_'));
    assert.deepEqual(await lines(), [
      'echo_operator_sharding_buckets_held 3',
      'echo_operator_sharding_buckets_draining 1',
      'echo_operator_sharding_acquired_total 5',
      'echo_operator_sharding_takeovers_total 2',
      'echo_operator_sharding_handovers_total 1',
      'echo_operator_sharding_lost_total 1',
      'echo_operator_sharding_bucket_objects{bucket="0"} 10',
      'echo_operator_sharding_bucket_objects{bucket="7"} 2',
      'echo_operator_sharding_bucket_objects{bucket="9"} 0',
    ]);
    // Bucket 7 handed over, bucket 0 grown, one more taken: read afresh at each scrape.
    Object.assign(stats, { held: 2, draining: 0, acquired: 6, handovers: 2 });
    objects = new Map([
      [0, 11],
      [9, 0],
    ]);
    assert.deepEqual(await lines(), [
      'echo_operator_sharding_buckets_held 2',
      'echo_operator_sharding_buckets_draining 0',
      'echo_operator_sharding_acquired_total 6',
      'echo_operator_sharding_takeovers_total 2',
      'echo_operator_sharding_handovers_total 2',
      'echo_operator_sharding_lost_total 1',
      'echo_operator_sharding_bucket_objects{bucket="0"} 11',
      'echo_operator_sharding_bucket_objects{bucket="9"} 0',
    ]);
    const open = (await m.render('application/openmetrics-text')).body;
    assert.match(open, /^# TYPE echo_operator_sharding_handovers counter$/m);
    assert.match(open, /^echo_operator_sharding_handovers_total 2$/m);
  });
});
