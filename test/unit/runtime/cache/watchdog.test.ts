// How the informer judges the end of a watch: the pure decision.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { watchEndIsFailure } from '../../../../src/runtime/cache/watchdog.ts';

describe('watchEndIsFailure', () => {
  it('counts a watch closed within a second with no event as a failure', () => {
    assert.equal(watchEndIsFailure({ kind: 'closed', livedMs: 5, events: 0 }), true);
    assert.equal(watchEndIsFailure({ kind: 'closed', livedMs: 999, events: 0 }), true);
  });

  it('resumes at once after a watch that brought an event or lived a second', () => {
    assert.equal(watchEndIsFailure({ kind: 'closed', livedMs: 5, events: 1 }), false);
    assert.equal(watchEndIsFailure({ kind: 'closed', livedMs: 1000, events: 0 }), false);
    // A healthy watch reaching the server's timeout on a server that sends no bookmarks.
    assert.equal(watchEndIsFailure({ kind: 'closed', livedMs: 300_000, events: 0 }), false);
  });

  it('counts a silent watch as a failure only where the server sends bookmarks', () => {
    assert.equal(
      watchEndIsFailure({ kind: 'silent', silentMs: 150_000, bookmarksSeen: true }),
      true,
    );
    // Quiet and healthy, on a server that sends no bookmarks: it reached our limit, nothing more.
    assert.equal(
      watchEndIsFailure({ kind: 'silent', silentMs: 150_000, bookmarksSeen: false }),
      false,
    );
  });
});
