// A KubeClient for unit tests, scripted in memory: list answers and watch streams given in order,
// every request recorded. What informers and event recorders are given instead of a server.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient, RequestOptions, WatchOptions } from '../../src/kube/client.ts';
import type { WatchEvent } from '../../src/kube/object.ts';
import { ApiError } from '../../src/kube/errors.ts';

/**
 * One step of a watch stream: an event; an event made from the watch's options (to use its
 * protobuf decoder); an error that ends the stream; a pause of that many milliseconds; or 'hang',
 * which waits for the watch to be aborted.
 */
export type WatchStep<T> =
  WatchEvent<T> | ((opts: WatchOptions<T>) => WatchEvent<T>) | Error | number | 'hang';

export interface FakeCall {
  kind: 'list' | 'watch';
  query: Record<string, unknown>;
  /** performance.now() at the call. */
  at: number;
  /** Whether a watch was given a protobuf decoder. */
  protobuf: boolean;
}

export interface FakeClientOptions<T> {
  /** The items of each list, in order; lists past the last are empty. */
  lists?: T[][];
  /** The steps of each watch stream, in order; a watch past the last aborts `stop` and ends. */
  watches?: WatchStep<T>[][];
  stop?: AbortController;
  /**
   * Serve WatchList (a watch asking for the initial events is a stream like any other). By
   * default it is refused with 422, as a server without the feature does, and not recorded.
   */
  watchList?: boolean;
  /**
   * Answers a request other than a GET (its answer, or a rejection); by default it succeeds with no
   * body. A GET is a list, answered from `lists`.
   */
  respond?: (opts: RequestOptions) => Promise<unknown>;
}

export interface FakeClient {
  client: Pick<KubeClient, 'request' | 'watch'>;
  /** Lists and watches, in order. */
  calls: FakeCall[];
  /** Every request (not watch), in order, as given. */
  requests: RequestOptions[];
}

/** The refusal of a watch asking for the initial events, from a server without WatchList. */
export const watchListRefusal = (): ApiError =>
  new ApiError(
    422,
    { reason: 'Invalid', message: 'resourceVersionMatch is forbidden for watch' },
    'watch',
    '/pods',
  );

/** Lists answer at resourceVersions 100, 101, ... */
export function fakeClient<T>(options: FakeClientOptions<T> = {}): FakeClient {
  const { lists = [], watches = [], stop, watchList = false, respond } = options;
  const calls: FakeCall[] = [];
  const requests: RequestOptions[] = [];
  let rv = 100;
  const record = (kind: FakeCall['kind'], query: RequestOptions['query'], protobuf = false) =>
    calls.push({ kind, query: query ?? {}, at: performance.now(), protobuf });
  return {
    calls,
    requests,
    client: {
      request<R>(opts: RequestOptions): Promise<R> {
        requests.push(opts);
        if (opts.method !== undefined && opts.method !== 'GET')
          return (respond?.(opts) ?? Promise.resolve(undefined)) as Promise<R>;
        record('list', opts.query);
        const items = lists.shift() ?? [];
        return Promise.resolve({ metadata: { resourceVersion: String(rv++) }, items } as R);
      },
      async *watch<R>(opts: WatchOptions<R>): AsyncGenerator<WatchEvent<R>> {
        if (opts.query?.sendInitialEvents && !watchList) throw watchListRefusal();
        record('watch', opts.query, opts.protobuf !== undefined);
        const steps = watches.shift() as WatchStep<R>[] | undefined;
        if (!steps) {
          stop?.abort();
          return;
        }
        // A stream that fails at once was refused; any other was open.
        if (!(steps[0] instanceof Error)) opts.onOpen?.();
        for (const step of steps) {
          if (typeof step === 'number') {
            await sleep(step);
            continue;
          }
          await Promise.resolve();
          if (step === 'hang') {
            const signal = opts.signal;
            if (!signal) throw new Error('a watch that hangs needs a signal to end it');
            await new Promise((resolve) => {
              signal.addEventListener('abort', resolve);
            });
            throw new Error('aborted');
          }
          if (step instanceof Error) throw step;
          opts.onData?.();
          yield typeof step === 'function' ? step(opts) : step;
        }
      },
    },
  };
}
