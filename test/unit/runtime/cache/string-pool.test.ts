// The string pool: equal values in, equal values out, the pool bounded. That the copies are shared
// is what the memory gate (test/bench/memory-gate.test.ts) measures: heap per cached object.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StringPool } from '../../../../src/runtime/cache/string-pool.ts';

describe('StringPool', () => {
  it('keeps one entry per distinct string, however often it is interned', () => {
    const pool = new StringPool();
    for (let i = 0; i < 100; i++)
      assert.equal(pool.intern(['Progress', 'ing'].join('')), 'Progressing');
    assert.equal(pool.size, 1);
  });

  it('interns every string of a decoded value in place, leaving the rest as it was', () => {
    const pool = new StringPool();
    const status = JSON.parse(
      '{"replicas":2,"conditions":[{"type":"Available","status":"True"},{"type":"Progressing","status":"True"}],"labels":{"app":"echo"},"paused":false,"none":null}',
    ) as unknown;
    const copy = structuredClone(status);
    assert.equal(pool.internAll(status), status, 'the same object, changed in place');
    assert.deepEqual(status, copy);
    assert.equal(pool.size, 4, 'Available, True, Progressing, echo: none twice');
  });

  it('starts over once full, so values that stop recurring do not pile up', () => {
    const pool = new StringPool(3);
    for (const t of ['10:00:01', '10:00:02', '10:00:03', '10:00:04']) pool.intern(t);
    assert.equal(pool.size, 1);
    assert.equal(pool.intern('10:00:04'), '10:00:04');
  });

  it('shares one frozen copy of equal values, keeps unequal ones apart', () => {
    const pool = new StringPool();
    const first = pool.share({ drop: ['ALL'], user: 65534 });
    assert.equal(pool.share({ drop: ['ALL'], user: 65534 }), first);
    assert.notEqual(pool.share({ drop: ['ALL'], user: 1000 }), first);
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.drop), 'frozen to the leaves');
    const holder = { conditions: first };
    assert.equal(pool.internAll(holder), holder, 'a shared value inside is left as it is');
  });
});
