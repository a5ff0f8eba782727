// One run of bench/watchlist.ts, in a process of its own so that its peak RSS is its own: an
// informer of Echoes and one of Deployments until both are synced, then its figures on stdout.
//   node bench/watchlist-child.ts list|watchlist KUBECONFIG NAMESPACE
import { KubeClient } from '../src/kube/client.ts';
import { Informer } from '../src/runtime/cache/informer.ts';
import type { KubeObject } from '../src/kube/object.ts';

/** The child: both informers until synced, then its figures on stdout. */
async function child(kubeconfig: string, ns: string, watchList: boolean): Promise<void> {
  const started = performance.now();
  const client = KubeClient.fromFile(kubeconfig);
  const stop = new AbortController();
  const informers = [
    `/apis/example.com/v1/namespaces/${ns}/echoes`,
    `/apis/apps/v1/namespaces/${ns}/deployments`,
  ].map((path) => new Informer<KubeObject>({ name: path, client, path, watchList }));
  const running = informers.map((i) => i.run(stop.signal));
  await Promise.all(informers.map((i) => i.whenSynced()));
  const syncedMs = performance.now() - started;
  const sizes = informers.map((i) => i.size);
  stop.abort();
  await Promise.all(running);
  await client.close();
  const maxRssMiB = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({ syncedMs, maxRssMiB, sizes }));
}

const [mode, kubeconfig = '', ns = ''] = process.argv.slice(2);
await child(kubeconfig, ns, mode === 'watchlist');
