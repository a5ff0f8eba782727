import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  escapeHeaderKey,
  impersonationHeaders,
} from '../../../../src/kube/kubeconfig/impersonation.ts';

describe('impersonationHeaders', () => {
  it('sends one header per group and per extra value, the uid with the user', () => {
    assert.deepEqual(
      impersonationHeaders(
        {
          as: 'system:serviceaccount:ns:sa',
          'as-uid': 'u-1',
          'as-groups': ['a', 'b'],
          'as-user-extra': { reason: ['x', 'y'], empty: [] },
        },
        'users[0].user',
      ),
      {
        'Impersonate-User': 'system:serviceaccount:ns:sa',
        'Impersonate-Uid': 'u-1',
        'Impersonate-Group': ['a', 'b'],
        'Impersonate-Extra-reason': ['x', 'y'],
      },
    );
    assert.deepEqual(impersonationHeaders({}, 'users[0].user'), {});
  });

  it('refuses groups, uid or extras without a user to act as', () => {
    assert.throws(
      () => impersonationHeaders({ 'as-uid': '1' }, 'users[0].user'),
      /users\[0\]\.user\.as-uid needs users\[0\]\.user\.as/,
    );
    assert.throws(
      () => impersonationHeaders({ 'as-user-extra': { k: ['v'] } }, 'u'),
      /u\.as-user-extra needs u\.as/,
    );
  });

  it('refuses a value that cannot be sent in a header', () => {
    assert.throws(
      () => impersonationHeaders({ as: 'jane\r\nX-Evil: 1' }, 'u'),
      /cannot be sent in a header/,
    );
  });
});

describe('escapeHeaderKey', () => {
  it('percent-encodes what a header name cannot hold, and %', () => {
    assert.equal(escapeHeaderKey('scopes.example.com/reason'), 'scopes.example.com%2Freason');
    assert.equal(escapeHeaderKey('a b%c'), 'a%20b%25c');
    assert.equal(escapeHeaderKey('ü'), '%C3%BC');
    assert.equal(escapeHeaderKey("plain-key_1.~!#$&'*+^`|"), "plain-key_1.~!#$&'*+^`|");
  });
});
