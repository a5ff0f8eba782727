import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bypassesProxy, proxyFor } from '../../../../src/kube/transport/proxy.ts';

describe('bypassesProxy: Go’s NO_PROXY rules', () => {
  const cases: [host: string, port: string, noProxy: string, direct: boolean][] = [
    // Loopback is never proxied, whatever NO_PROXY says.
    ['localhost', '6443', '', true],
    ['127.0.0.1', '6443', '', true],
    ['127.1.2.3', '6443', '', true],
    ['[::1]', '6443', '', true],
    ['10.0.0.1', '6443', '', false],
    ['api.example.com', '443', '*', true],
    // A name matches itself and its subdomains; a leading dot or `*.` only the subdomains.
    ['example.com', '443', 'example.com', true],
    ['api.example.com', '443', 'example.com', true],
    ['notexample.com', '443', 'example.com', false],
    ['example.com', '443', '.example.com', false],
    ['api.example.com', '443', '.example.com', true],
    ['example.com', '443', '*.example.com', false],
    ['api.example.com', '443', '*.example.com', true],
    ['API.Example.COM', '443', ' other.org , EXAMPLE.com ', true],
    // A port in the entry must match.
    ['api.example.com', '6443', 'example.com:6443', true],
    ['api.example.com', '443', 'example.com:6443', false],
    // Addresses and networks match addresses only.
    ['10.1.2.3', '443', '10.0.0.0/8', true],
    ['11.0.0.1', '443', '10.0.0.0/8', false],
    ['ten.example.com', '443', '10.0.0.0/8', false],
    ['10.1.2.3', '443', '10.1.2.3', true],
    ['10.1.2.3', '6443', '10.1.2.3:443', false],
    ['[fd00::1]', '443', 'fd00::/8', true],
    ['[fd00::1]', '6443', '[fd00::1]:6443', true],
    ['[fd00::1]', '443', '10.0.0.0/8', false],
    ['10.1.2.3', '443', ',,', false],
  ];
  for (const [host, port, noProxy, direct] of cases) {
    it(`${host}:${port} with NO_PROXY="${noProxy}" goes ${direct ? 'direct' : 'through the proxy'}`, () => {
      assert.equal(bypassesProxy(host, port, noProxy), direct);
    });
  }
});

describe('proxyFor', () => {
  const server = new URL('https://api.example.com:6443');

  it('takes the cluster’s proxy-url for every host, NO_PROXY and loopback included', () => {
    const env = { NO_PROXY: '*', HTTPS_PROXY: 'http://env:1' };
    assert.equal(proxyFor(server, 'http://p:3128', 'proxy-url', env)?.href, 'http://p:3128/');
    const local = new URL('https://127.0.0.1:6443');
    assert.equal(proxyFor(local, 'https://p:3128', 'proxy-url', {})?.href, 'https://p:3128/');
  });

  it('reads HTTPS_PROXY before https_proxy, HTTP_PROXY for an http server', () => {
    const env = {
      HTTPS_PROXY: 'http://upper:1',
      https_proxy: 'http://lower:1',
      HTTP_PROXY: 'http://plain:1',
    };
    assert.equal(proxyFor(server, undefined, 'proxy-url', env)?.host, 'upper:1');
    assert.equal(
      proxyFor(server, undefined, 'proxy-url', { https_proxy: 'http://lower:1' })?.host,
      'lower:1',
    );
    assert.equal(
      proxyFor(new URL('http://api.example.com'), undefined, 'proxy-url', env)?.host,
      'plain:1',
    );
    assert.equal(
      proxyFor(server, undefined, 'proxy-url', { HTTP_PROXY: 'http://plain:1' }),
      undefined,
    );
  });

  it('reads a proxy without a scheme as http, and honours NO_PROXY and no_proxy', () => {
    assert.equal(
      proxyFor(server, undefined, 'proxy-url', { HTTPS_PROXY: 'proxy:3128' })?.href,
      'http://proxy:3128/',
    );
    assert.equal(
      proxyFor(server, undefined, 'proxy-url', {
        HTTPS_PROXY: 'proxy:3128',
        no_proxy: '.example.com',
      }),
      undefined,
    );
  });

  it('refuses proxies it cannot use, naming where they came from', () => {
    assert.throws(
      () => proxyFor(server, 'socks5://p:1080', 'clusters[0].cluster.proxy-url', {}),
      /^KubeconfigError: clusters\[0\]\.cluster\.proxy-url: socks5 proxies are not supported/,
    );
    assert.throws(
      () => proxyFor(server, undefined, 'proxy-url', { HTTPS_PROXY: 'socks5://p:1080' }),
      /HTTPS_PROXY: socks5 proxies are not supported/,
    );
    assert.throws(
      () => proxyFor(server, 'ftp://p', 'proxy-url', {}),
      /"ftp" is not a proxy scheme/,
    );
    assert.throws(
      () => proxyFor(server, 'http://', 'proxy-url', {}),
      /proxy-url "http:\/\/" is not a URL/,
    );
  });
});
