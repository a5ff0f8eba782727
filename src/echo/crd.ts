// The Echo CRD, defined once: the TypeBox schemas below are the CRD's OpenAPI schema, written to
// charts/echo-operator/files/crds/ by `make generate`, and (through api.ts) the operator's types. Only
// the generator, the tests and the tooling load this module; the operator does not.
import Type from 'typebox';
import { stringify } from 'yaml';
import { DEFAULT_IMAGE, GROUP, KIND, MAX_REPLICAS, PLURAL, VERSION } from './api.ts';

export const CRD_FILE = 'charts/echo-operator/files/crds/echoes.example.com.yaml';

export const EchoSpec = Type.Object(
  {
    replicas: Type.Integer({
      format: 'int32',
      minimum: 0,
      maximum: MAX_REPLICAS,
      description: `Number of echo-server pods to run, 0 to ${String(MAX_REPLICAS)}.`,
    }),
    image: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        default: DEFAULT_IMAGE,
        description: `Container image of the echo server. Defaults to ${DEFAULT_IMAGE}.`,
      }),
    ),
  },
  { description: 'Desired state of the Echo.' },
);

export const Condition = Type.Object(
  {
    type: Type.String({ maxLength: 316, description: 'Type of condition: Ready or Progressing.' }),
    // A plain string enum: structural CRD schemas have no `const`, which Type.Literal would give.
    status: Type.Unsafe<'True' | 'False' | 'Unknown'>({
      type: 'string',
      enum: ['True', 'False', 'Unknown'],
      description: 'Status of the condition: True, False or Unknown.',
    }),
    observedGeneration: Type.Optional(
      Type.Integer({
        format: 'int64',
        minimum: 0,
        description: 'The Echo generation this condition was set for.',
      }),
    ),
    lastTransitionTime: Type.String({
      format: 'date-time',
      description: 'When the condition last changed from one status to another.',
    }),
    reason: Type.String({
      maxLength: 1024,
      minLength: 1,
      description: 'CamelCase reason for the condition’s last transition.',
    }),
    message: Type.String({
      maxLength: 32768,
      description: 'Human-readable details of the transition.',
    }),
  },
  { description: 'A metav1.Condition.' },
);

export const EchoStatus = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({
        format: 'int64',
        description: 'The Echo generation the operator last acted on.',
      }),
    ),
    replicas: Type.Optional(
      Type.Integer({ format: 'int32', description: 'Pods of the Deployment.' }),
    ),
    readyReplicas: Type.Optional(
      Type.Integer({ format: 'int32', description: 'Pods that are Ready.' }),
    ),
    availableReplicas: Type.Optional(
      Type.Integer({ format: 'int32', description: 'Pods Ready for at least minReadySeconds.' }),
    ),
    updatedReplicas: Type.Optional(
      Type.Integer({ format: 'int32', description: 'Pods running the current pod template.' }),
    ),
    selector: Type.Optional(
      Type.String({ description: 'Label selector of the pods, for the scale subresource (HPA).' }),
    ),
    conditions: Type.Optional(
      Type.Array(Condition, {
        description: 'Ready and Progressing, in the metav1.Condition shape.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
      }),
    ),
  },
  { description: 'Observed state of the Echo, written by the operator.' },
);

/** Kubernetes object names: a DNS subdomain (RFC 1123), which is what a Deployment name must be. */
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** The CustomResourceDefinition, as applied to the cluster and shipped in the Helm chart. */
export function echoCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: 'echo',
        shortNames: ['echo'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'An Echo runs a Deployment of echo-server pods with spec.replicas replicas.',
              required: ['spec'],
              properties: {
                apiVersion: {
                  type: 'string',
                  description: 'Versioned schema of this representation of an object.',
                },
                kind: { type: 'string', description: 'REST resource this object represents.' },
                metadata: { type: 'object' },
                spec: toJson(EchoSpec),
                status: toJson(EchoStatus),
              },
              // Custom resources only check that a name is a path segment; the Deployment needs more.
              'x-kubernetes-validations': [
                {
                  rule: `self.metadata.name.matches('${DNS_SUBDOMAIN}')`,
                  message:
                    'metadata.name must be a lowercase RFC 1123 subdomain, as the Deployment it becomes must be',
                },
              ],
            },
          },
          subresources: {
            status: {},
            scale: {
              specReplicasPath: '.spec.replicas',
              statusReplicasPath: '.status.replicas',
              labelSelectorPath: '.status.selector',
            },
          },
          additionalPrinterColumns: [
            {
              name: 'Ready',
              type: 'string',
              jsonPath: '.status.conditions[?(@.type=="Ready")].status',
            },
            { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas' },
            { name: 'Ready Replicas', type: 'integer', jsonPath: '.status.readyReplicas' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
        },
      ],
    },
  };
}

/** A TypeBox schema as plain JSON (TypeBox keeps its own bookkeeping in symbol keys). */
function toJson(schema: unknown): unknown {
  return JSON.parse(JSON.stringify(schema)) as unknown;
}

export function crdManifest(): string {
  return `# Generated from src/echo/crd.ts by \`make generate\`: do not edit.\n${stringify(echoCrd(), { lineWidth: 0 })}`;
}
