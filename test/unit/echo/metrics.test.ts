// The Echo controller's own series, registered beside the runtime's under its prefix.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { echoMetrics } from '../../../src/echo/metrics.ts';
import { Metrics } from '../../../src/runtime/metrics.ts';
import { WorkQueue } from '../../../src/runtime/workqueue.ts';

function metrics(prefix = 'echo_operator_'): Metrics {
  return new Metrics({
    prefix,
    server: 'https://10.0.0.1:6443',
    queues: () => new Map([['echo', new WorkQueue()]]),
    cacheSizes: () => ({}),
    ready: () => true,
  });
}

describe('echoMetrics', () => {
  it('counts recreated Deployments, in both formats', async () => {
    const m = metrics();
    const echo = echoMetrics(m);
    assert.match(
      (await m.render('text/plain')).body,
      /^echo_operator_deployment_recreates_total 0$/m,
    );
    echo.recreated();
    echo.recreated();
    assert.match(
      (await m.render('application/openmetrics-text')).body,
      /^echo_operator_deployment_recreates_total 2$/m,
    );
  });

  it('keeps counter names whole in the text format after an OpenMetrics scrape', async () => {
    const m = metrics();
    echoMetrics(m).recreated();
    await m.render('application/openmetrics-text');
    assert.match(
      (await m.render('text/plain')).body,
      /^echo_operator_deployment_recreates_total 1$/m,
    );
  });

  it('drops the desired-replicas series of a deleted Echo', async () => {
    const m = metrics();
    const echo = echoMetrics(m);
    echo.desired('team/web', 3);
    echo.desired('team/api', 2);
    assert.match(
      (await m.render(undefined)).body,
      /^echo_operator_echo_desired_replicas\{namespace="team",name="web"\} 3$/m,
    );
    echo.desired('team/web', undefined);
    const { body } = await m.render(undefined);
    assert.doesNotMatch(body, /name="web"/);
    assert.match(body, /^echo_operator_echo_desired_replicas\{namespace="team",name="api"\} 2$/m);
  });

  it("names its series with the Metrics' prefix", async () => {
    const m = metrics('other_');
    echoMetrics(m).desired('team/web', 1);
    const { body } = await m.render(undefined);
    assert.match(body, /^other_echo_desired_replicas\{namespace="team",name="web"\} 1$/m);
    assert.match(body, /^other_deployment_recreates_total 0$/m);
  });
});
