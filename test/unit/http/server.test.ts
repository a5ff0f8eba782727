// /readyz: a failing check named, with what fails when the check says.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startHttpServer } from '../../../src/http/server.ts';

describe('/readyz', () => {
  it('fails on a check that returns a reason, and prints the reason', async () => {
    let silent: string | undefined =
      'deployments watch silent for 4.2 s (/apis/apps/v1/deployments)';
    const server = await startHttpServer({
      port: 0,
      readiness: { 'informers-synced': () => true, 'watches-heard': () => silent ?? true },
      metrics: () => Promise.resolve({ contentType: 'text/plain', body: '' }),
    });
    try {
      const url = `http://127.0.0.1:${String(server.port)}/readyz`;
      const failing = await fetch(url);
      assert.equal(failing.status, 503);
      assert.equal(
        await failing.text(),
        '[+]informers-synced ok\n[-]watches-heard failed: deployments watch silent for 4.2 s (/apis/apps/v1/deployments)\nreadyz check failed\n',
      );
      silent = undefined;
      const passing = await fetch(url);
      assert.equal(passing.status, 200);
      assert.equal(await passing.text(), 'ok');
    } finally {
      await server.close();
    }
  });
});
