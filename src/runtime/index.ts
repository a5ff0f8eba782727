// The runtime's public API: what a controller of your own is built from (docs/runtime.md). Import
// it as `echo-operator/runtime`; anything not exported here may change without notice.
export { Manager } from './manager.ts';
export type {
  LeaderElectionOptions,
  ManagedController,
  ShardingOptions,
  ManagerOptions,
  RuntimeObservers,
  ServeOptions,
} from './manager.ts';
export type { MetricsServeOptions } from './metrics-server.ts';
export { newController, controllerOwnerKey } from './builder.ts';
export type {
  Cache,
  Caches,
  ControllerContext,
  ControllerDeclaration,
  ControllerIdentity,
  MappedWatchOptions,
  WatchOptions,
} from './builder.ts';
export {
  DEFAULT_RECONCILE_TIMEOUT_MS,
  DRAIN_GRACE_MS,
  ReconcileTimeoutError,
  Result,
} from './controller.ts';
export type { ReconcileContext, Reconciler, RetrySchedule } from './controller.ts';
export type { EventRecorder, EventType, ObjectReference } from './events.ts';
export { DEFAULT_TIMINGS } from './leader-election.ts';
export type { LeaderElectionTimings } from './leader-election.ts';
export type { Metrics } from './metrics.ts';
export type { InformerGroup } from './cache/informer-group.ts';
export { DEFAULT_BUCKET_COUNT, SLOT_LABEL, slotOf } from './sharding/buckets.ts';
export {
  CONFIGMAPS,
  DEPLOYMENTS,
  EVENTS,
  LEASES,
  Resource,
  collectionPath,
  resource,
} from '../kube/resource.ts';
export type {
  ApplyObject,
  ApplyOptions,
  ConfigMap,
  DeleteOptions,
  ResourceType,
} from '../kube/resource.ts';
export type { KubeObject, ObjectMetadata } from '../kube/object.ts';
export { ApiError, isConflict, isNotFound } from '../kube/errors.ts';
export { loadConnection } from '../kube/kubeconfig/kubeconfig.ts';
export type { KubeClient } from '../kube/client.ts';
export { createLoggers } from '../telemetry/logger.ts';
export type { Logger } from '../telemetry/logger.ts';
