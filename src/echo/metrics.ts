// The Echo controller's own series, beside the runtime's: recreated Deployments, and each Echo's
// desired replicas.
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../runtime/metrics.ts';

export interface EchoMetrics {
  /** Counts delete-and-recreate fallbacks (an immutable field changed). */
  recreated: () => void;
  /** Sets the desired-replicas series of an Echo, or removes it (undefined) once it is gone. */
  desired: (key: string, replicas: number | undefined) => void;
}

export function echoMetrics(metrics: Metrics): EchoMetrics {
  const registers = metrics.registers;
  const recreates = new Counter({
    name: `${metrics.prefix}deployment_recreates_total`,
    help: 'Deployments deleted and created again because an immutable field differed',
    registers,
  });
  const desiredReplicas = new Gauge({
    name: `${metrics.prefix}echo_desired_replicas`,
    help: 'spec.replicas of each Echo; the series goes when the Echo does',
    labelNames: ['namespace', 'name'],
    registers,
  });
  return {
    recreated: () => {
      recreates.inc();
    },
    desired: (key, replicas) => {
      const [namespace = '', name = ''] = key.split('/');
      if (replicas === undefined) desiredReplicas.remove({ namespace, name });
      else desiredReplicas.set({ namespace, name }, replicas);
    },
  };
}
