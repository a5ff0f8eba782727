// The two parts of undici the client uses. undici's index also loads fetch, WebSocket, its caches,
// mocks and their dependencies: resident memory the operator would carry for nothing
// (docs/benchmark.md, "Where the memory goes"). Its files are CommonJS with no exports map, so they load by path; the types
// are the index's own. The index's one side effect the client needs is repeated here: the
// request API (request, connect...) put on every dispatcher.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const load = createRequire(import.meta.url);

const dispatcher = load('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
Object.assign(dispatcher.prototype, load('undici/lib/api/index.js'));

export const Pool = load('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export type Pool = Undici.Pool;
export const buildConnector = load('undici/lib/core/connect.js') as typeof Undici.buildConnector;
export type Connector = Undici.buildConnector.connector;
export type { Dispatcher } from 'undici';
