// Heap per cached object: builds the operator's two informer caches exactly as the operator does
// (same transforms, same selectors), lets them sync against a namespace, and reports the heap they
// hold per object after garbage collection. Run with --expose-gc; prints one JSON line.
//
//   node --expose-gc bench/memory-probe.ts --kubeconfig FILE --namespace NS
import { parseArgs } from 'node:util';
import { REPORTING_CONTROLLER, echoController } from '../src/echo/controller.ts';
import { loadConnection } from '../src/kube/kubeconfig/kubeconfig.ts';
import { Manager } from '../src/runtime/manager.ts';
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

// A Manager that only fills its caches: no controller runs, so nothing but the caches is held.
const manager = new Manager({
  connection: loadConnection({ path: values.kubeconfig }),
  namespaces: [values.namespace],
  instance: 'memory-probe',
  reportingController: REPORTING_CONTROLLER,
  concurrency: 1,
  resyncMs: 3600_000,
  log: createLoggers('warn', process.stderr).module,
});
const operator = manager.add(echoController());
const stop = new AbortController();
const before = heapAfterGc();
const informers = manager.fillCaches(stop.signal);
await operator.whenSynced();
const after = heapAfterGc();
const { echoes, deployments } = operator.caches;
const objects = echoes.size + deployments.size;
stop.abort();
await informers;
await manager.client.close();
console.log(
  JSON.stringify({
    echoes: echoes.size,
    deployments: deployments.size,
    heapBytes: after - before,
    bytesPerObject: Math.round((after - before) / objects),
  }),
);
