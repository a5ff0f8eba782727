// InformerGroup: one informer per watched namespace, or one for the whole cluster, read as one.
import { objectKey, type KubeObject } from '../../kube/object.ts';
import { Informer, type InformerEvent, type InformerOptions } from './informer.ts';

/**
 * Informers of one resource over several namespaces, read as one store: the operator watches
 * either the whole cluster (one informer) or a list of namespaces (one each, for RBAC scoped by
 * namespace).
 */
export class InformerGroup<T extends KubeObject> {
  /** The resource's cache name, in logs and metrics. */
  readonly name: string;
  /** What each informer was built with, but its path. */
  readonly options: Omit<InformerOptions<T>, 'path'>;
  private readonly byNamespace: Map<string | undefined, Informer<T>>;

  /** `namespaces` empty means one cluster-wide informer; `pathFor` builds the collection path. */
  constructor(
    namespaces: string[],
    pathFor: (namespace: string | undefined) => string,
    options: Omit<InformerOptions<T>, 'path'>,
  ) {
    this.name = options.name;
    this.options = options;
    const scopes = namespaces.length > 0 ? namespaces : [undefined];
    this.byNamespace = new Map(
      scopes.map((ns) => [ns, new Informer<T>({ ...options, path: pathFor(ns) })]),
    );
  }

  get informers(): Informer<T>[] {
    return [...this.byNamespace.values()];
  }

  get(key: string): T | undefined {
    return this.informerOf(key)?.get(key);
  }

  assume(written: T, basedOn: string | undefined): void {
    this.informerOf(objectKey(written))?.assume(written, basedOn);
  }

  private informerOf(key: string): Informer<T> | undefined {
    const slash = key.indexOf('/');
    const namespace = slash >= 0 ? key.slice(0, slash) : undefined;
    return this.byNamespace.get(namespace) ?? this.byNamespace.get(undefined);
  }

  keys(): string[] {
    return this.informers.flatMap((i) => i.keys());
  }

  get size(): number {
    return this.informers.reduce((n, i) => n + i.size, 0);
  }

  get synced(): boolean {
    return this.informers.every((i) => i.synced);
  }

  get connected(): boolean {
    return this.informers.every((i) => i.connected);
  }

  /** Each watch silent past its limit, named. */
  silentWatches(): string[] {
    return this.informers.flatMap((i) => i.silentWatch() ?? []);
  }

  async whenSynced(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.whenSynced()));
  }

  onEvent(handler: (event: InformerEvent<T>) => void): void {
    for (const i of this.informers) i.onEvent(handler);
  }

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all(this.informers.map((i) => i.run(signal)));
  }
}
