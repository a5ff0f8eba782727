// Heap per cached object: builds the operator's two informer caches exactly as the operator does
// (same transforms, same selectors), lets them sync against a namespace, and reports the heap they
// hold per object after garbage collection. Run with --expose-gc; prints one JSON line.
//
//   node --expose-gc bench/memory-probe.ts --kubeconfig FILE --namespace NS
import { parseArgs } from 'node:util';
import { KubeClient } from '../src/kube/client.ts';
import { EchoOperator } from '../src/operator.ts';
import { createLoggers } from '../src/telemetry/logger.ts';

const { values } = parseArgs({
  options: { kubeconfig: { type: 'string' }, namespace: { type: 'string' } },
});
if (!values.kubeconfig || !values.namespace || typeof globalThis.gc !== 'function') {
  console.error(
    'usage: node --expose-gc bench/memory-probe.ts --kubeconfig FILE --namespace NAMESPACE',
  );
  process.exit(2);
}
const gc = globalThis.gc;

const heapAfterGc = (): number => {
  // Twice: the first pass can leave objects whose finalizers free more.
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const client = KubeClient.fromFile(values.kubeconfig);
const operator = new EchoOperator({
  client,
  namespaces: [values.namespace],
  concurrency: 1,
  resyncMs: 3600_000,
  instance: 'memory-probe',
  log: createLoggers('warn', process.stderr).module,
});
const stop = new AbortController();
const before = heapAfterGc();
const informers = Promise.all([
  operator.echoes.run(stop.signal),
  operator.deployments.run(stop.signal),
]);
await Promise.all([operator.echoes.whenSynced(), operator.deployments.whenSynced()]);
const after = heapAfterGc();
const objects = operator.echoes.size + operator.deployments.size;
stop.abort();
await informers;
await client.close();
console.log(
  JSON.stringify({
    echoes: operator.echoes.size,
    deployments: operator.deployments.size,
    heapBytes: after - before,
    bytesPerObject: Math.round((after - before) / objects),
  }),
);
