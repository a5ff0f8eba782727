// What a request is, in Kubernetes terms: its verb, resource and a path template with no object
// names in it (safe as a metric label). Mirrors the apiserver's own RequestInfo parsing.

export interface RequestInfo {
  /** get, list, watch, create, update, patch, apply, delete, deletecollection, or the HTTP method for non-resource paths. */
  verb: string;
  /** `deployments`, `echoes.example.com`, `deployments/status`; empty for non-resource paths. */
  resource: string;
  /** The path with namespace and name replaced by placeholders. */
  pathTemplate: string;
}

export const APPLY_PATCH = 'application/apply-patch+yaml';

export function describeRequest(
  method: string,
  path: string,
  query: Record<string, string> = {},
  contentType?: string,
): RequestInfo {
  const pathOnly = path.split('?', 1)[0] ?? path;
  const segments = pathOnly.split('/').filter(Boolean);
  let prefixLength: number;
  let group = '';
  if (segments[0] === 'api' && segments.length >= 2) {
    prefixLength = 2;
  } else if (segments[0] === 'apis' && segments.length >= 3) {
    group = segments[1] ?? '';
    prefixLength = 3;
  } else {
    return { verb: method.toUpperCase(), resource: '', pathTemplate: pathOnly };
  }

  const template = segments.slice(0, prefixLength);
  let rest = segments.slice(prefixLength);
  // /api/v1 or /apis/{group}/{version} alone: API discovery, not a resource.
  if (rest.length === 0)
    return { verb: method.toUpperCase(), resource: '', pathTemplate: pathOnly };
  // /namespaces/{ns}/<resource>... is namespaced; /namespaces/{name} alone is the Namespace itself.
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    template.push('namespaces', '{namespace}');
    rest = rest.slice(2);
  }
  const [resourceName = '', name, subresource] = rest;
  template.push(resourceName);
  if (name !== undefined) template.push('{name}');
  if (subresource !== undefined) template.push(subresource);

  const resource =
    (group ? `${resourceName}.${group}` : resourceName) + (subresource ? `/${subresource}` : '');
  return {
    verb: verbOf(method.toUpperCase(), name !== undefined, query, contentType),
    resource,
    pathTemplate: '/' + template.join('/'),
  };
}

function verbOf(
  method: string,
  named: boolean,
  query: Record<string, string>,
  contentType?: string,
): string {
  switch (method) {
    case 'GET':
      if (query.watch === 'true' || query.watch === '1') return 'watch';
      return named ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return contentType === APPLY_PATCH ? 'apply' : 'patch';
    case 'DELETE':
      return named ? 'delete' : 'deletecollection';
    default:
      return method.toLowerCase();
  }
}

/** True for verbs that change state: what "zero writes in steady state" counts. */
export function isWriteVerb(verb: string): boolean {
  return ['create', 'update', 'patch', 'apply', 'delete', 'deletecollection'].includes(verb);
}

/**
 * Reviews (TokenReview, SubjectAccessReview and their kin) are created and stored nowhere: a
 * question to the API server, not a write, though their verb is create.
 */
export function isReview(resource: string): boolean {
  return /^[a-z]+reviews\.(authentication|authorization)\.k8s\.io$/.test(resource);
}
