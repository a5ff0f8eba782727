// The CRD as the YAML file shipped in the Helm chart's crds/ directory.
import { stringify } from 'yaml';
import { echoCrd } from './api.ts';

export const CRD_FILE = 'charts/echo-operator/crds/echoes.example.com.yaml';

export function crdManifest(): string {
  return `# Generated from src/echo/api.ts by \`make generate\`: do not edit.\n${stringify(echoCrd(), { lineWidth: 0 })}`;
}
