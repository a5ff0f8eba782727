// Typed Kubernetes API errors, built from the server's Status object, so callers branch on a
// reason rather than on message text; and the error for a kubeconfig the client cannot use.

/** A kubeconfig (or its environment) that cannot be used: the message says which field and why. */
export class KubeconfigError extends Error {
  override readonly name = 'KubeconfigError';
}

/** The `reason` values of metav1.Status that the operator acts on, plus a few it reports. */
export type StatusReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Forbidden'
  | 'Unauthorized'
  | 'Gone'
  | 'Expired'
  | 'TooManyRequests'
  | 'BadRequest'
  | 'MethodNotAllowed'
  | 'UnsupportedMediaType'
  | 'Timeout'
  | 'ServerTimeout'
  | 'InternalError'
  | 'ServiceUnavailable'
  | 'Unknown';

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** The subset of metav1.Status that error responses carry. */
export interface Status {
  kind?: 'Status';
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    causes?: StatusCause[];
    retryAfterSeconds?: number;
  };
}

const reasonByCode: Record<number, StatusReason> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly code: number;
  readonly reason: StatusReason;
  readonly status: Status;
  readonly verb: string;
  readonly path: string;

  constructor(code: number, status: Status, verb: string, path: string) {
    const reason = normaliseReason(status.reason, code);
    super(`${verb} ${path}: ${String(code)} ${reason}: ${status.message ?? 'no message'}`);
    this.code = code;
    this.reason = reason;
    this.status = status;
    this.verb = verb;
    this.path = path;
  }

  /** Field-level causes of an Invalid (422) error, e.g. `spec.selector: field is immutable`. */
  get causes(): StatusCause[] {
    return this.status.details?.causes ?? [];
  }
}

function normaliseReason(reason: string | undefined, code: number): StatusReason {
  const known = Object.values(reasonByCode) as string[];
  if (
    reason !== undefined &&
    (known.includes(reason) ||
      reason === 'AlreadyExists' ||
      reason === 'Expired' ||
      reason === 'ServerTimeout')
  ) {
    return reason as StatusReason;
  }
  return reasonByCode[code] ?? 'Unknown';
}

/** Turns a response body into a Status, whatever the server (or a proxy in front of it) sent. */
export function parseStatus(body: string, code: number): Status {
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed !== null && typeof parsed === 'object' && (parsed as Status).kind === 'Status') {
      return parsed;
    }
  } catch {
    // Not JSON: keep the text as the message below.
  }
  return { code, message: body.slice(0, 500) };
}

const hasReason =
  (reason: StatusReason) =>
  (err: unknown): err is ApiError =>
    err instanceof ApiError && err.reason === reason;

export const isNotFound = hasReason('NotFound');
export const isConflict = hasReason('Conflict');
export const isInvalid = hasReason('Invalid');
export const isForbidden = hasReason('Forbidden');
export const isTooManyRequests = hasReason('TooManyRequests');
/** 410 Gone and the Expired reason both mean a resourceVersion is too old: relist. */
export const isGone = (err: unknown): err is ApiError =>
  err instanceof ApiError &&
  (err.code === 410 || err.reason === 'Expired' || err.reason === 'Gone');

/**
 * 403 because the namespace is being deleted: nothing can be created in it any more, and what is
 * in it goes with it, so retrying is pointless.
 */
export const isNamespaceTerminating = (err: unknown): err is ApiError =>
  err instanceof ApiError &&
  err.code === 403 &&
  err.causes.some((c) => c.reason === 'NamespaceTerminating');
