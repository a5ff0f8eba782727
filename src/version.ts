// The operator's version, from package.json beside the sources (and beside the compiled form in
// dist/operator, where the build copies it).
import { readFileSync } from 'node:fs';

export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;
