// Structured logging with pino: JSON for machines, one line of text for people, and levels per
// module (`info,controller=debug,kube=warn`), like echo-operator-rs's --log-filter.
import pino, { type DestinationStream, type Logger } from 'pino';
import { sampledSpanIds } from './tracing.ts';

export type { Logger };

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
type Level = (typeof LEVELS)[number];

export interface LogFilter {
  level: Level;
  modules: Record<string, Level>;
}

/** Parses `info,controller=debug`; an unknown level or a malformed entry throws. */
export function parseLogFilter(filter: string): LogFilter {
  const result: LogFilter = { level: 'info', modules: {} };
  for (const part of filter
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [module, level] = part.includes('=') ? part.split('=', 2) : [undefined, part];
    if (!LEVELS.includes(level as Level)) {
      throw new Error(`log filter "${filter}": "${level}" is not one of ${LEVELS.join(', ')}`);
    }
    if (module === undefined) result.level = level as Level;
    else if (/^[a-z][a-z0-9-]*$/.test(module)) result.modules[module] = level as Level;
    else throw new Error(`log filter "${filter}": "${module}" is not a module name`);
  }
  return result;
}

export interface Loggers {
  root: Logger;
  /** A logger for one part of the operator, at the level the filter gives that module. */
  module: (name: string) => Logger;
}

/**
 * The text format's stream: one readable line per entry on stdout. Loaded only when asked for, so
 * the JSON format does not carry pino-pretty in memory.
 */
export async function textStream(): Promise<DestinationStream> {
  const { default: pretty } = await import('pino-pretty');
  return pretty({
    sync: true,
    colorize: false,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
  });
}

/** Loggers writing JSON lines to `destination` (stdout by default). */
export function createLoggers(
  filter: string,
  destination?: NodeJS.WritableStream | DestinationStream,
  /** Adds trace_id and span_id of the active sampled span to every line (tracing on). */
  traceIds = false,
): Loggers {
  const parsed = parseLogFilter(filter);
  const levels = [parsed.level, ...Object.values(parsed.modules)];
  // The root must let through the most verbose level any module asks for; modules then narrow.
  const mostVerbose = levels.reduce((a, b) => (LEVELS.indexOf(a) <= LEVELS.indexOf(b) ? a : b));
  const stream = destination ?? pino.destination({ dest: 1, sync: true });
  const root = pino(
    {
      level: mostVerbose,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      ...(traceIds ? { mixin: () => sampledSpanIds() ?? {} } : {}),
      // Credentials never reach a log line, whatever an error object carries.
      redact: {
        paths: ['authorization', '*.authorization', 'headers.authorization', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    stream,
  );
  return {
    root: root.child({}, { level: parsed.level }),
    module: (name) => root.child({ module: name }, { level: parsed.modules[name] ?? parsed.level }),
  };
}

/** What was thrown, as text for a log field or a message: an Error's message, anything else as is. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
