// Which proxy the client goes through, picked as client-go picks it, and the tunnel through it.
//
// A cluster's `proxy-url` applies to every request to that cluster. Without one, the environment
// decides, with Go's rules (golang.org/x/net/http/httpproxy), which differ from undici's
// EnvHttpProxyAgent: HTTPS_PROXY before https_proxy, NO_PROXY entries may be CIDRs, a leading dot
// matches subdomains only, and localhost and loopback addresses never go through a proxy.
//
// The tunnel is built from undici's parts (Pool#connect for the CONNECT, buildConnector for TLS
// inside it) rather than its ProxyAgent: ProxyAgent does speak HTTP/2 through the tunnel, but it
// does not pass on its pools' connect and disconnect events, and the client needs the disconnect
// event to move off a connection the API server sent GOAWAY on.
import { BlockList, Socket, isIP } from 'node:net';
import { Pool, buildConnector, type Connector } from './undici.ts';
import { KubeconfigError } from '../errors.ts';
import type { TlsOptions } from '../kubeconfig/types.ts';

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

const family = (ip: string): 'ipv4' | 'ipv6' => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');

/** Go's NO_PROXY entry forms: `host`, `host:port`, `[v6]:port`, `ip`, `cidr`, `.domain`, `*.domain`. */
function splitHostPort(entry: string): [host: string, port: string] {
  const bracketed = /^\[(.+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1] ?? '', bracketed[2] ?? ''];
  const withPort = /^([^:]+):(\d+)$/.exec(entry);
  if (withPort) return [withPort[1] ?? '', withPort[2] ?? ''];
  return [entry, ''];
}

function matchesEntry(host: string, port: string, entry: string): boolean {
  const hostIsIp = isIP(host) !== 0;
  const cidr = /^(.+)\/(\d{1,3})$/.exec(entry);
  const network = cidr?.[1] ?? '';
  if (cidr && isIP(network)) {
    const bits = Number(cidr[2]);
    if (bits > (isIP(network) === 4 ? 32 : 128) || isIP(host) !== isIP(network)) return false;
    const subnet = new BlockList();
    subnet.addSubnet(network, bits, family(host));
    return subnet.check(host, family(host));
  }
  const [entryHost, entryPort] = splitHostPort(entry);
  if (!entryHost || (entryPort && entryPort !== port)) return false;
  if (isIP(entryHost)) {
    if (!hostIsIp || isIP(host) !== isIP(entryHost)) return false;
    const address = new BlockList();
    address.addAddress(entryHost, family(host));
    return address.check(host, family(host));
  }
  // `example.com` matches itself and its subdomains; `.example.com` and `*.example.com` only these.
  const domain = entryHost.startsWith('*.') ? entryHost.slice(1) : entryHost;
  const suffix = domain.startsWith('.') ? domain : `.${domain}`;
  return host.endsWith(suffix) || (!domain.startsWith('.') && host === domain);
}

/** Whether a request to `host:port` goes direct under Go's NO_PROXY rules. */
export function bypassesProxy(host: string, port: string, noProxy: string): boolean {
  const name = host.replace(/^\[(.+)\]$/, '$1').toLowerCase();
  if (name === 'localhost' || (isIP(name) && loopback.check(name, family(name)))) return true;
  return noProxy
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .some((entry) => entry === '*' || (entry !== '' && matchesEntry(name, port, entry)));
}

function checkedProxyUrl(raw: string, setting: string): URL {
  if (!URL.canParse(raw)) throw new KubeconfigError(`${setting} "${raw}" is not a URL`);
  const url = new URL(raw);
  if (url.protocol === 'socks5:') {
    throw new KubeconfigError(
      `${setting}: socks5 proxies are not supported, only http and https (HTTP CONNECT) proxies`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new KubeconfigError(
      `${setting}: "${url.protocol.slice(0, -1)}" is not a proxy scheme (http, https or socks5)`,
    );
  }
  return url;
}

function firstSet(env: NodeJS.ProcessEnv, ...names: string[]): [string, string] | undefined {
  for (const name of names) {
    const value = env[name];
    if (value) return [name, value];
  }
  return undefined;
}

/**
 * The proxy to reach `server` through, or undefined to connect directly: the cluster's
 * `proxy-url` (named `setting` in messages) for every host, else HTTPS_PROXY (HTTP_PROXY for an
 * http server) unless NO_PROXY exempts the host.
 */
export function proxyFor(
  server: URL,
  proxyUrl: string | undefined,
  setting: string,
  env: NodeJS.ProcessEnv,
): URL | undefined {
  if (proxyUrl) return checkedProxyUrl(proxyUrl, setting);
  const https = server.protocol === 'https:';
  const found = https
    ? firstSet(env, 'HTTPS_PROXY', 'https_proxy')
    : firstSet(env, 'HTTP_PROXY', 'http_proxy');
  if (!found) return undefined;
  const [name, value] = found;
  // Go reads a proxy without a scheme as http.
  const proxy = checkedProxyUrl(value.includes('://') ? value : `http://${value}`, name);
  const port = server.port || (https ? '443' : '80');
  const noProxy = firstSet(env, 'NO_PROXY', 'no_proxy')?.[1] ?? '';
  return bypassesProxy(server.hostname, port, noProxy) ? undefined : proxy;
}

export interface Tunnel {
  /** For undici's `connect` option: CONNECT through the proxy, then TLS to the server inside. */
  connect: Connector;
  close: () => Promise<void>;
}

export function tunnel(proxy: URL, tls: TlsOptions, allowH2: boolean): Tunnel {
  const { ca, cert, key, servername, rejectUnauthorized } = tls;
  const toServer = buildConnector({
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(servername ? { servername } : {}),
    rejectUnauthorized,
    allowH2,
  });
  // client-go has one TLS configuration for both hops: the cluster's CA also verifies an https proxy.
  const toProxy = new Pool(proxy.origin, {
    connect: { ...(ca ? { ca } : {}), rejectUnauthorized },
  });
  const authorization = proxy.username
    ? `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`
    : undefined;
  const connect: Connector = (opts, callback) => {
    const target = `${opts.hostname}:${opts.port || (opts.protocol === 'https:' ? '443' : '80')}`;
    // A tunnel that fails is a plain error: undici would retry a socket error without end.
    const failed = (why: string, cause?: unknown): void => {
      callback(new Error(`proxy ${proxy.origin}: CONNECT ${target}: ${why}`, { cause }), null);
    };
    toProxy
      .connect({
        path: target,
        headers: {
          host: target,
          ...(authorization ? { 'proxy-authorization': authorization } : {}),
        },
      })
      .then(
        ({ socket, statusCode }) => {
          if (!(socket instanceof Socket)) {
            socket.destroy();
            failed('the tunnel is not a socket');
          } else if (statusCode !== 200) {
            socket.destroy();
            failed(`answered ${String(statusCode)}`);
          } else if (opts.protocol === 'https:') {
            toServer({ ...opts, httpSocket: socket }, callback);
          } else {
            callback(null, socket);
          }
        },
        (err: unknown) => {
          failed(err instanceof Error ? err.message : String(err), err);
        },
      );
  };
  return { connect, close: () => toProxy.close() };
}
