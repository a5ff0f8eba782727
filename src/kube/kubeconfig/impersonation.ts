// Impersonation, from a kubeconfig user's `as`, `as-uid`, `as-groups` and `as-user-extra`: the
// Impersonate-* headers client-go sends with every request. The API server checks that the real
// user may impersonate, then authorizes the request as the impersonated one.
import { KubeconfigError } from '../errors.ts';
import type { User } from './fields.ts';

/** Request headers; a list is one header field per value. */
export type Headers = Record<string, string | string[]>;

/** Bytes allowed in a header name (RFC 9110 token), but `%`, which starts an escape. */
const TOKEN_BYTE = /^[A-Za-z0-9!#$&'*+\-.^_`|~]$/;

/**
 * An extra's key as a header name suffix: bytes not allowed in a header name, and `%`, become
 * `%XX` (UTF-8), as client-go writes them and the API server reads them back.
 */
export function escapeHeaderKey(key: string): string {
  let escaped = '';
  for (const byte of new TextEncoder().encode(key)) {
    const char = String.fromCharCode(byte);
    escaped +=
      byte < 0x80 && TOKEN_BYTE.test(char)
        ? char
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return escaped;
}

type Impersonation = Pick<User, 'as' | 'as-uid' | 'as-groups' | 'as-user-extra'>;

export function impersonationHeaders(user: Impersonation, where: string): Headers {
  const { as: name, 'as-uid': uid, 'as-groups': groups = [], 'as-user-extra': extra = {} } = user;
  if (!name) {
    // client-go would send an empty Impersonate-User, which the API server refuses on every call.
    const orphan =
      uid !== undefined
        ? 'as-uid'
        : groups.length
          ? 'as-groups'
          : Object.keys(extra).length
            ? 'as-user-extra'
            : undefined;
    if (orphan) throw new KubeconfigError(`${where}.${orphan} needs ${where}.as (whom to act as)`);
    return {};
  }
  const headers: Headers = { 'Impersonate-User': name };
  if (uid) headers['Impersonate-Uid'] = uid;
  if (groups.length) headers['Impersonate-Group'] = groups;
  for (const [key, values] of Object.entries(extra)) {
    if (values.length) headers[`Impersonate-Extra-${escapeHeaderKey(key)}`] = values;
  }
  for (const value of Object.values(headers).flat()) {
    if (/[\r\n\0]/.test(value)) {
      throw new KubeconfigError(
        `${where}: impersonation value ${JSON.stringify(value)} cannot be sent in a header`,
      );
    }
  }
  return headers;
}
