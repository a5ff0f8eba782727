// The setup most cluster tests repeat: an admin client, namespaces of their own, the operator
// scoped to them, and their teardown. Call useNamespaces at the top of a describe: it registers the
// suite's before and after hooks itself. The admin client and the namespaces' names are there at
// once (the names are chosen now, the namespaces created in the suite's before hook), so they can
// be destructured; the operator once the tests run.
import { after, before, type TestContext } from 'node:test';
import type { KubeClient } from '../../src/kube/client.ts';
import { OPERATOR_RULES } from './fixtures.ts';
import {
  adminClient,
  clusterKubeconfig,
  createNamespace,
  grantRole,
  namespaceName,
  serviceAccountKubeconfig,
  type TestNamespace,
} from './kube.ts';
import { startOperator, type OperatorOverrides, type RunningOperator } from './operator.ts';

export interface NamespaceSpec {
  /** The name's start; a random suffix follows. */
  prefix: string;
  labels?: Record<string, string>;
}

export interface NamespaceOptions {
  /**
   * Starts the operator on all the namespaces, with these options (true: the defaults), once they
   * exist.
   */
  operator?: true | OperatorOverrides;
  /**
   * A ServiceAccount of the first namespace, granted the operator's rules (the chart's) in every
   * namespace: the operator runs as it, so the audit log tells its requests from the test's.
   */
  serviceAccount?: string;
}

export interface NamespaceFixture<Namespaces extends TestNamespace[] = TestNamespace[]> {
  /** An admin client of the shared cluster, closed after the suite. */
  readonly admin: KubeClient;
  /** The namespaces, in the order asked for: created before the suite's tests, deleted after. */
  readonly namespaces: Namespaces;
  /** The first of them. */
  readonly ns: TestNamespace;
  /**
   * The running operator, stopped after the suite: the one `operator` asked for, or one the suite
   * set here itself (a suite that restarts the operator sets the new one).
   */
  operator: RunningOperator;
  /** The kubeconfig the operator runs with: the ServiceAccount's if one was asked for, else the admin's. */
  readonly kubeconfig: string;
  /**
   * Runs `fn` as the suite ends, before the operator stops and the namespaces go (what watches
   * them, or needs the admin client); the last registered first.
   */
  cleanup: (fn: () => unknown) => void;
}

/** An admin client, `specs`' namespaces and, if asked for, the operator on them, for one suite. */
export function useNamespaces<const Specs extends readonly (string | NamespaceSpec)[]>(
  specs: Specs,
  options: NamespaceOptions = {},
): NamespaceFixture<{ -readonly [K in keyof Specs]: TestNamespace }> {
  const admin = adminClient();
  const planned = specs.map((spec) => {
    const { prefix, labels = {} } = typeof spec === 'string' ? { prefix: spec } : spec;
    return { prefix, labels, name: namespaceName(prefix) };
  });
  const namespaces = planned.map(({ name }) => ({
    name,
    remove: () => admin.request({ method: 'DELETE', path: `/api/v1/namespaces/${name}` }),
  })) as { -readonly [K in keyof Specs]: TestNamespace };
  const created = new Set<string>();
  const cleanups: (() => unknown)[] = [];
  let operator: RunningOperator | undefined;
  let kubeconfig = clusterKubeconfig();
  const fixture: NamespaceFixture<typeof namespaces> = {
    admin,
    namespaces,
    get ns(): TestNamespace {
      return namespaces[0] ?? missing('no namespace asked for');
    },
    get operator(): RunningOperator {
      return operator ?? missing('no operator is running');
    },
    set operator(running: RunningOperator) {
      operator = running;
    },
    get kubeconfig(): string {
      return kubeconfig;
    },
    cleanup: (fn) => {
      cleanups.push(fn);
    },
  };

  before(async () => {
    // Twenty at a time: a suite may ask for a hundred.
    for (let i = 0; i < planned.length; i += 20) {
      await Promise.all(
        planned.slice(i, i + 20).map(async ({ prefix, labels, name }) => {
          await createNamespace(admin, prefix, labels, name);
          created.add(name);
        }),
      );
    }
    const account = options.serviceAccount;
    if (account !== undefined) {
      const home = fixture.ns.name;
      for (const { name } of namespaces)
        await grantRole(admin, name, `${home}/${account}`, OPERATOR_RULES);
      kubeconfig = await serviceAccountKubeconfig(admin, home, account);
    }
    if (options.operator) {
      const overrides = options.operator === true ? {} : options.operator;
      operator = await startOperator(
        namespaces.map((n) => n.name),
        overrides,
        kubeconfig,
      );
    }
  });

  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
    await operator?.stop();
    await Promise.all(namespaces.filter((n) => created.has(n.name)).map((n) => n.remove()));
    await admin.close();
  });

  return fixture;
}

/** useNamespaces with one namespace. */
export function useNamespace(
  spec: string | NamespaceSpec,
  options: NamespaceOptions = {},
): NamespaceFixture {
  return useNamespaces([spec], options);
}

/** An admin client of the shared cluster for one suite, closed after it. */
export function useAdmin(): KubeClient {
  return useNamespaces([]).admin;
}

/** A namespace for one test, deleted when the test ends (after its own finally blocks). */
export async function testNamespace(
  t: TestContext,
  admin: KubeClient,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<TestNamespace> {
  const ns = await createNamespace(admin, prefix, labels);
  t.after(() => ns.remove());
  return ns;
}

function missing(what: string): never {
  throw new Error(`useNamespaces: ${what}`);
}
