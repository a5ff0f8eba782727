// A sharded replica's cache of one resource: the groups of the buckets it holds, read as one. What
// a bucket given up leaves behind (nothing, at once), whose events are told, and where a write the
// cache does not hold yet is assumed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject } from '../../../../src/kube/object.ts';
import type { InformerEvent } from '../../../../src/runtime/cache/informer.ts';
import { ShardedCache } from '../../../../src/runtime/sharding/sharded-cache.ts';
import { FakeGroup } from '../../../support/fake-group.ts';

/** An object of bucket `bucket` (as its label says), or of none said. */
const object = (name: string, bucket?: number, rv = '1'): KubeObject => ({
  metadata: {
    name,
    namespace: 'ns',
    resourceVersion: rv,
    ...(bucket === undefined ? {} : { labels: { bucket: String(bucket) } }),
  },
});

const bucketOf = (o: KubeObject): number | undefined => {
  const label = o.metadata.labels?.bucket;
  return label === undefined ? undefined : Number(label);
};

/** A cache holding buckets 0 (objects a, b) and 1 (object c), and the events it told. */
function twoBuckets() {
  const cache = new ShardedCache<KubeObject>('widgets', bucketOf);
  const zero = new FakeGroup('0', [object('a', 0), object('b', 0)]);
  const one = new FakeGroup('1', [object('c', 1)]);
  cache.add(0, zero.group);
  cache.add(1, one.group);
  const events: string[] = [];
  cache.onEvent((e: InformerEvent<KubeObject>) =>
    events.push(`${e.type} ${e.object.metadata.name}`),
  );
  return { cache, zero, one, events };
}

describe('ShardedCache', () => {
  it('reads the groups added as one: get, keys, size, buckets', () => {
    const { cache, zero } = twoBuckets();
    assert.deepEqual(cache.buckets, [0, 1]);
    assert.deepEqual(cache.keys().sort(), ['ns/a', 'ns/b', 'ns/c']);
    assert.equal(cache.size, 3);
    assert.equal(cache.get('ns/a')?.metadata.name, 'a');
    assert.equal(cache.get('ns/c')?.metadata.name, 'c');
    assert.equal(cache.get('ns/x'), undefined);
    assert.equal(cache.part(0), zero.group);
    assert.equal(cache.part(7), undefined);
  });

  it('drops a removed bucket’s objects at once, returning its group to be stopped', () => {
    const { cache, zero } = twoBuckets();
    assert.equal(cache.remove(0), zero.group);
    assert.deepEqual(cache.buckets, [1]);
    assert.equal(cache.get('ns/a'), undefined);
    assert.equal(cache.get('ns/b'), undefined);
    assert.deepEqual(cache.keys(), ['ns/c']);
    assert.equal(cache.size, 1);
    assert.equal(cache.remove(0), undefined, 'removed once');
  });

  it('tells the events of the groups held, and no more those of a removed one', () => {
    const { cache, zero, one, events } = twoBuckets();
    zero.emit({ type: 'add', object: object('d', 0) });
    one.emit({ type: 'delete', object: object('c', 1) });
    assert.deepEqual(events, ['add d', 'delete c']);
    cache.remove(0);
    // Its informers stop a little later: what they still bring is not this cache's.
    zero.emit({ type: 'delete', object: object('a', 0) });
    one.emit({ type: 'add', object: object('e', 1) });
    assert.deepEqual(events, ['add d', 'delete c', 'add e']);
    // The bucket taken again later reads a new group; the old one stays silent.
    const again = new FakeGroup('0 again', [object('a', 0)]);
    cache.add(0, again.group);
    zero.emit({ type: 'add', object: object('z', 0) });
    again.emit({ type: 'add', object: object('f', 0) });
    assert.deepEqual(events, ['add d', 'delete c', 'add e', 'add f']);
  });

  it('assumes a write in the group of its bucket, though no group holds the object yet', () => {
    const { cache, zero, one } = twoBuckets();
    const created = object('new', 1, '40');
    cache.assume(created, undefined);
    assert.deepEqual(one.assumed, [{ written: created, basedOn: undefined }]);
    assert.deepEqual(zero.assumed, []);
    assert.equal(cache.get('ns/new'), created);
    // An object of a bucket not held is not assumed anywhere.
    cache.assume(object('elsewhere', 5, '41'), undefined);
    assert.equal(cache.get('ns/elsewhere'), undefined);
    assert.equal(zero.assumed.length + one.assumed.length, 1);
  });

  it('assumes a write whose bucket it cannot tell in the group that holds the object', () => {
    const { cache, zero, one } = twoBuckets();
    const updated = object('c', undefined, '2');
    cache.assume(updated, '1');
    assert.deepEqual(one.assumed, [{ written: updated, basedOn: '1' }]);
    assert.deepEqual(zero.assumed, []);
  });
});
