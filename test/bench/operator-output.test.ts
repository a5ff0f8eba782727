// The benchmark's operator under test writes its log without the harness in the way: a child that
// floods stdout and stderr while the harness's event loop is busy must not wait on the harness,
// and nothing of what it wrote may be lost. No control plane needed.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { spawnLogged } from '../../bench/run.ts';

const MIB = 1024 * 1024;
/** Far more than a pipe holds (64 KiB by default), so a writer nobody drains must block. */
const STDOUT_BYTES = 8 * MIB;
const STDERR_BYTES = 1 * MIB;

/** Writes STDOUT_BYTES to stdout, closes it, then STDERR_BYTES and a last line to stderr. */
const FLOOD = `
const { writeSync, closeSync } = require('node:fs');
const chunk = Buffer.alloc(64 * 1024, 'o');
for (let i = 0; i < ${String(STDOUT_BYTES)} / chunk.length; i++) writeSync(1, chunk);
closeSync(1);
const err = Buffer.alloc(64 * 1024, 'e');
for (let i = 0; i < ${String(STDERR_BYTES)} / err.length; i++) writeSync(2, err);
writeSync(2, 'done\\n');
`;

/** The process state letter from /proc (Z: exited, not yet reaped) and where it sleeps. */
function procState(pid: number): { state: string; wchan: string } {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  const wchan = readFileSync(`/proc/${String(pid)}/wchan`, 'utf8');
  return { state, wchan };
}

describe('benchmark operator output', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echo-bench-output-'));
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets a flooding operator run while the harness is busy, and keeps every byte', async () => {
    const log = join(dir, 'operator.log');
    const child = spawnLogged(process.execPath, ['-e', FLOOD], process.env, log);
    const exited = once(child, 'exit');
    assert.ok(child.pid !== undefined);
    // The harness busy (its event loop held here, as a slow harness under load would be) until
    // the child has written everything and exited. A child that must wait for the harness to
    // drain its output never gets there: it sleeps in pipe_write.
    const deadline = performance.now() + 60_000;
    let seen = procState(child.pid);
    while (seen.state !== 'Z' && performance.now() < deadline) seen = procState(child.pid);
    assert.equal(
      seen.state,
      'Z',
      `the operator could not finish while the harness was busy: state ${seen.state} in ${seen.wchan}`,
    );
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0);
    assert.equal(statSync(log).size, STDOUT_BYTES + STDERR_BYTES + 'done\n'.length);
    // In the order written: stderr written after stdout closed is kept too.
    const expected = 'o'.repeat(STDOUT_BYTES) + 'e'.repeat(STDERR_BYTES) + 'done\n';
    assert.ok(
      readFileSync(log, 'latin1') === expected,
      'operator.log differs from what was written',
    );
  });
});
