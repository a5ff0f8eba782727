// kube-apiserver refuses to start on a feature gate its release does not know: the local control
// plane turns ShardedListAndWatch on only from 1.36, where KEP-5866 brought it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiserverFeatureGates } from '../../../hack/cluster/cluster.ts';

describe('the local kube-apiserver feature gates', () => {
  it('turns ShardedListAndWatch on by default on 1.36 and later', () => {
    for (const version of ['v1.36.3', 'v1.37.2', '1.40.0']) {
      assert.deepEqual(apiserverFeatureGates(version, undefined), [
        '--feature-gates=ShardedListAndWatch=true',
      ]);
    }
  });

  it('turns it off when asked, explicitly, so a later default-on release stays off', () => {
    assert.deepEqual(apiserverFeatureGates('v1.36.3', false), [
      '--feature-gates=ShardedListAndWatch=false',
    ]);
  });

  it('leaves the gate out on a release that does not know it', () => {
    assert.deepEqual(apiserverFeatureGates('v1.33.13', undefined), []);
    assert.deepEqual(apiserverFeatureGates('v1.35.0', false), []);
  });

  it('refuses to turn it on where the release does not know it', () => {
    assert.throws(
      () => apiserverFeatureGates('v1.33.13', true),
      /Kubernetes v1\.33\.13 has no ShardedListAndWatch feature gate/,
    );
  });

  it('refuses what is not a Kubernetes 1.x version', () => {
    assert.throws(
      () => apiserverFeatureGates('latest', undefined),
      /not a Kubernetes 1\.x version/,
    );
  });
});
