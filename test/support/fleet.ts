// Many Echoes at once, for the fault tests: created in parallel through an API server that may be
// away for a while, and checked against their Deployments with two lists rather than a GET each.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Echo } from '../../src/echo/api.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { isReady } from './fixtures.ts';
import { echoManifest } from './echo.ts';
import { eventually } from './kube.ts';

export interface FleetDeployment {
  metadata: {
    name: string;
    uid: string;
    ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
  };
  spec: { replicas: number };
}

export const echoesPath = (ns: string): string => `/apis/example.com/v1/namespaces/${ns}/echoes`;
export const deploymentsPath = (ns: string): string => `/apis/apps/v1/namespaces/${ns}/deployments`;

/**
 * Creates every Echo of `replicasByName` at once. A create that fails without an answer (the API
 * server went away) is sent again; 409 means an earlier attempt got through before the answer was
 * lost.
 */
export async function createEchoes(
  admin: KubeClient,
  ns: string,
  replicasByName: Map<string, number>,
): Promise<void> {
  await Promise.all(
    [...replicasByName].map(async ([name, replicas]) => {
      for (;;) {
        try {
          await admin.request({
            method: 'POST',
            path: echoesPath(ns),
            body: echoManifest({ name, replicas }),
          });
          return;
        } catch (err) {
          if (err instanceof ApiError && err.code === 409) return;
          if (err instanceof ApiError && err.code < 500 && err.code !== 429) throw err;
          await sleep(200);
        }
      }
    }),
  );
}

export async function listDeployments(admin: KubeClient, ns: string): Promise<FleetDeployment[]> {
  return (await admin.request<{ items: FleetDeployment[] }>({ path: deploymentsPath(ns) })).items;
}

/**
 * What still differs from `replicasByName` in `ns`: each Echo Ready with its replicas (unless
 * `ready` is false), and exactly one Deployment, controlled by that Echo (by uid), with the same
 * replicas. Empty once converged.
 */
export async function fleetDifferences(
  admin: KubeClient,
  ns: string,
  replicasByName: Map<string, number>,
  ready = true,
): Promise<string[]> {
  const [echoes, deployments] = await Promise.all([
    admin.request<{ items: Echo[] }>({ path: echoesPath(ns) }),
    listDeployments(admin, ns),
  ]);
  const differences: string[] = [];
  const echoByName = new Map(echoes.items.map((e) => [e.metadata.name, e]));
  for (const [name, replicas] of replicasByName) {
    const echo = echoByName.get(name);
    if (!echo) {
      differences.push(`${name}: no Echo`);
      continue;
    }
    if (ready && !isReady(echo, replicas))
      differences.push(`${name}: not Ready with ${String(replicas)}`);
    const controlled = deployments.filter((d) =>
      d.metadata.ownerReferences?.some((r) => r.controller === true && r.uid === echo.metadata.uid),
    );
    if (controlled.length !== 1) {
      differences.push(`${name}: ${String(controlled.length)} Deployments`);
    } else if (controlled[0]?.spec.replicas !== replicas) {
      differences.push(`${name}: Deployment has ${String(controlled[0]?.spec.replicas)} replicas`);
    }
  }
  const strays = deployments.filter((d) => !replicasByName.has(d.metadata.name));
  if (strays.length > 0) differences.push(`${String(strays.length)} Deployments of no Echo`);
  return differences;
}

/**
 * Waits until nothing differs from `replicasByName` in `ns` (see fleetDifferences); on timeout,
 * says what still does.
 */
export async function converged(
  admin: KubeClient,
  ns: string,
  replicasByName: Map<string, number>,
  { timeoutMs = 120_000, ready = true }: { timeoutMs?: number; ready?: boolean } = {},
): Promise<void> {
  let differences: string[] = [];
  try {
    await eventually(
      `${String(replicasByName.size)} Echoes to converge`,
      async () => {
        differences = await fleetDifferences(admin, ns, replicasByName, ready);
        return differences.length === 0 ? true : undefined;
      },
      timeoutMs,
      200,
    );
  } catch (err) {
    const detail = differences.slice(0, 10).join('; ');
    throw new Error(`${err instanceof Error ? err.message : String(err)}; still: ${detail}`, {
      cause: err,
    });
  }
}
