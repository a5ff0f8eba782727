// The connection bound: every never-ending watch gets a stream, and requests keep streams of their
// own, at 100 streams a connection.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectionsFor, STREAMS_PER_CONNECTION } from '../../../src/kube/client.ts';

describe('connectionsFor', () => {
  it('fits the watches and the requests in flight, at 100 streams a connection', () => {
    assert.equal(STREAMS_PER_CONNECTION, 100);
    assert.equal(connectionsFor(2, 48), 1, 'the whole cluster, default concurrency');
    assert.equal(connectionsFor(52, 48), 1, '26 namespaces: exactly one connection full');
    assert.equal(connectionsFor(54, 48), 2);
    assert.equal(connectionsFor(240, 48), 3, '120 namespaces');
    assert.equal(connectionsFor(300, 48), 4, '150 namespaces');
  });

  it('opens at least one connection', () => {
    assert.equal(connectionsFor(0, 0), 1);
  });
});
