// A second controller on the runtime, from its public API alone: a ConfigMap labelled
// `example.com/mirror: <namespace>` is copied into that namespace, kept equal to its source, and
// removed with it. Owner references cannot cross namespaces, so copies name their source by label.
import { CONFIGMAPS, Result, newController, resource, type ConfigMap } from 'echo-operator/runtime';

export const MIRROR_LABEL = 'example.com/mirror';
const SOURCE_LABEL = 'example.com/mirrored-from';

const sourceKey = (copy: ConfigMap): string[] => {
  const from = copy.metadata.labels?.[SOURCE_LABEL];
  return from ? [`${from}/${copy.metadata.name}`] : [];
};

export const mirrorController = newController({
  name: 'configmap-mirror',
  reportingController: 'example.com/configmap-mirror',
})
  .for(CONFIGMAPS, { labelSelector: MIRROR_LABEL })
  .watches(CONFIGMAPS, { as: 'copies', labelSelector: SOURCE_LABEL, map: sourceKey })
  .complete(({ caches, client }) => {
    const configMaps = resource(client, CONFIGMAPS);
    /** Deletes every copy of `key` but the one in `keep`. */
    const prune = async (key: string, keep: string | undefined, signal: AbortSignal) => {
      for (const copyKey of caches.copies.keys()) {
        const copy = caches.copies.get(copyKey);
        const { namespace = '', name, uid } = copy?.metadata ?? { name: '' };
        if (copy && sourceKey(copy)[0] === key && namespace !== keep) {
          await configMaps.namespace(namespace).delete(name, { ...(uid ? { uid } : {}), signal });
        }
      }
    };
    return {
      async reconcile(source, { key, signal }) {
        const target = source.metadata.labels?.[MIRROR_LABEL];
        const { name, namespace = '' } = source.metadata;
        // Going, or nowhere else to go: nothing to copy.
        if (source.metadata.deletionTimestamp || !target || target === namespace) {
          return Result.done();
        }
        const copies = configMaps.namespace(target);
        const copy = caches.copies.get(`${target}/${name}`);
        // A ConfigMap of that name that is not this source's copy is someone else's: left alone.
        if (copy ? sourceKey(copy)[0] !== key : await copies.find(name, { signal })) {
          return Result.blocked('NameTaken', { initialMs: 5_000, maxMs: 300_000 }, 'any');
        }
        if (JSON.stringify(copy?.data ?? {}) !== JSON.stringify(source.data ?? {})) {
          const labels = { [SOURCE_LABEL]: namespace };
          const desired = {
            ...CONFIGMAP_TYPE,
            metadata: { name, labels },
            data: source.data ?? {},
          };
          // Forced only over our own copy: a ConfigMap made meanwhile is a conflict, not taken.
          const force = copy !== undefined;
          const written = await copies.apply(desired, { fieldManager: 'mirror', force, signal });
          // The watch's copy of this write then queues nothing.
          caches.copies.assume(written, copy?.metadata.resourceVersion);
        }
        await prune(key, target, signal);
        return Result.done();
      },
      deleted: (key, { signal }) => prune(key, undefined, signal),
    };
  });

const CONFIGMAP_TYPE = { apiVersion: CONFIGMAPS.apiVersion, kind: CONFIGMAPS.kind };
