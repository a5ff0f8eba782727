// Whose is the Deployment of an Echo's name? Pure, like desired.ts: the answer decides whether the
// operator may write to it at all, so every case is unit-tested.
import type { ObjectMetadata } from '../kube/object.ts';
import { API_VERSION, KIND, type Echo } from './api.ts';
import { MANAGED_BY } from './desired.ts';

/** What ownership needs of a Deployment: the cache's trimmed copy or a full object read. */
export interface DeploymentIdentity {
  metadata: Pick<
    ObjectMetadata,
    'name' | 'uid' | 'labels' | 'deletionTimestamp' | 'ownerReferences'
  >;
}

/**
 * - `absent`: no Deployment of that name: the operator may create one.
 * - `ours`: controlled by this Echo (by uid): the only kind the operator changes, deletes or
 *   re-creates.
 * - `orphan`: labelled as the operator's and controlled by nobody, as `kubectl delete echo
 *   --cascade=orphan` leaves it: adopted, as the Deployment controller adopts orphaned ReplicaSets.
 * - `terminating`: being deleted (a foreground delete waits for its pods): wait until it is gone.
 * - `previous`: controlled by an earlier Echo of the same name: the garbage collector removes it.
 * - `foreign`: anyone else's, never written to; `controller` names its controller, if it has one.
 */
export type Ownership =
  | { kind: 'absent' | 'ours' | 'orphan' | 'terminating' }
  | { kind: 'previous'; uid: string }
  | { kind: 'foreign'; controller?: string };

export function ownership(echo: Echo, deployment: DeploymentIdentity | undefined): Ownership {
  if (!deployment) return { kind: 'absent' };
  const m = deployment.metadata;
  if (m.deletionTimestamp) return { kind: 'terminating' };
  const controller = m.ownerReferences?.find((r) => r.controller === true);
  if (controller?.uid === echo.metadata.uid) return { kind: 'ours' };
  if (controller) {
    const anEcho = controller.kind === KIND && controller.apiVersion === API_VERSION;
    if (anEcho && controller.name === echo.metadata.name) {
      return { kind: 'previous', uid: controller.uid };
    }
    return { kind: 'foreign', controller: `${controller.kind} ${controller.name}` };
  }
  if (m.labels?.['app.kubernetes.io/managed-by'] === MANAGED_BY) return { kind: 'orphan' };
  return { kind: 'foreign' };
}
