// Writes the files generated from the sources: the CRD manifest from src/echo/crd.ts.
// `make generate` runs it; a unit test fails when the committed file is stale.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdManifest, CRD_FILE } from '../src/echo/crd.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(join(root, CRD_FILE), crdManifest());
console.log(`wrote ${CRD_FILE}`);
