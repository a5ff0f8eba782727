import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, duration, parseConfig, usage, type Config } from '../../src/config.ts';

const run = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => {
  const parsed = parseConfig(argv, env, 'host-1');
  assert.equal(parsed.kind, 'run');
  return parsed.config;
};

describe('parseConfig', () => {
  it('has defaults for everything', () => {
    const c = run([]);
    assert.deepEqual(c, {
      port: 8080,
      metrics: undefined,
      bindAddress: '',
      logFilter: 'info',
      logFormat: 'text',
      otlpEndpoint: '',
      otlpProtocol: 'grpc',
      traceSampleRatio: 0.1,
      namespaces: [],
      concurrency: 16,
      resyncSeconds: 600,
      reconcileTimeoutSeconds: 120,
      kubeconfig: '',
      instance: 'host-1',
      leaderElection: {
        enabled: false,
        namespace: '',
        leaseName: 'echo-operator',
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 2_000,
      },
      sharding: { enabled: false, bucketCount: 32 },
    });
  });

  it('reads the sharding flags and their environment', () => {
    assert.deepEqual(run(['--sharding=true', '--sharding-buckets=64']).sharding, {
      enabled: true,
      bucketCount: 64,
    });
    const env = { ECHO_OPERATOR_SHARDING: 'true', ECHO_OPERATOR_SHARDING_BUCKETS: '8' };
    assert.deepEqual(run([], env).sharding, { enabled: true, bucketCount: 8 });
  });

  it('reads the leader election flags and their environment', () => {
    const c = run(['--leader-elect=true', '--leader-elect-lease-duration=30s'], {
      ECHO_OPERATOR_LEADER_ELECT_NAMESPACE: 'echo-system',
      ECHO_OPERATOR_LEADER_ELECT_LEASE_NAME: 'echo-team-a',
      ECHO_OPERATOR_LEADER_ELECT_RENEW_DEADLINE: '20s',
      ECHO_OPERATOR_LEADER_ELECT_RETRY_PERIOD: '4s',
    });
    assert.deepEqual(c.leaderElection, {
      enabled: true,
      namespace: 'echo-system',
      leaseName: 'echo-team-a',
      leaseDurationMs: 30_000,
      renewDeadlineMs: 20_000,
      retryPeriodMs: 4_000,
    });
  });

  it('takes the environment when no flag is given, and the flag over the environment', () => {
    const env = {
      ECHO_OPERATOR_CONCURRENCY: '8',
      ECHO_OPERATOR_NAMESPACES: 'a, b',
      POD_NAME: 'pod-x',
    };
    assert.equal(run([], env).concurrency, 8);
    assert.deepEqual(run([], env).namespaces, ['a', 'b']);
    assert.equal(run([], env).instance, 'pod-x');
    assert.equal(run(['--concurrency=2'], env).concurrency, 2);
  });

  it('listens where --bind-address or its environment says: an IPv4 or IPv6 address', () => {
    assert.equal(run([], { ECHO_OPERATOR_BIND_ADDRESS: '127.0.0.1' }).bindAddress, '127.0.0.1');
    assert.equal(
      run(['--bind-address=::1'], { ECHO_OPERATOR_BIND_ADDRESS: '0.0.0.0' }).bindAddress,
      '::1',
    );
    assert.equal(run(['--bind-address='], { ECHO_OPERATOR_BIND_ADDRESS: '::' }).bindAddress, '');
  });

  it('moves /metrics to --metrics-port, secure unless told otherwise, with a certificate directory', () => {
    assert.deepEqual(run(['--metrics-port=8443']).metrics, {
      port: 8443,
      secure: true,
      certDir: '',
    });
    assert.deepEqual(
      run([], {
        ECHO_OPERATOR_METRICS_PORT: '8443',
        ECHO_OPERATOR_METRICS_CERT_DIR: '/etc/echo-operator/metrics-certs',
      }).metrics,
      { port: 8443, secure: true, certDir: '/etc/echo-operator/metrics-certs' },
    );
    assert.deepEqual(
      run(['--metrics-secure=false'], { ECHO_OPERATOR_METRICS_PORT: '9090' }).metrics,
      { port: 9090, secure: false, certDir: '' },
    );
    // Two free ports, each picked when it listens.
    assert.equal(run(['--port=0', '--metrics-port=0']).metrics?.port, 0);
  });

  it('refuses a metrics port that is --port, and metrics settings without a metrics port', () => {
    const cases: [string[], string][] = [
      [
        ['--metrics-port=8080'],
        '--metrics-port must differ from --port (8080): the probes stay on --port and /metrics moves',
      ],
      [
        ['--port=9000', '--metrics-port=9000'],
        '--metrics-port must differ from --port (9000): the probes stay on --port and /metrics moves',
      ],
      [
        ['--metrics-secure=true'],
        '--metrics-secure needs --metrics-port: without it /metrics is served on --port, plain, beside the probes',
      ],
      [
        ['--metrics-cert-dir=/certs'],
        '--metrics-cert-dir needs --metrics-port: without it /metrics is served on --port, plain, beside the probes',
      ],
      [
        ['--metrics-port=8443', '--metrics-secure=false', '--metrics-cert-dir=/certs'],
        '--metrics-cert-dir needs --metrics-secure: plain metrics use no certificate',
      ],
      [
        ['--metrics-port=8443', '--metrics-secure=yes'],
        '--metrics-secure must be true or false, not "yes"',
      ],
      [
        ['--metrics-port=https'],
        '--metrics-port must be a whole number from 0 to 65535, not "https"',
      ],
    ];
    for (const [argv, message] of cases) {
      assert.throws(() => parseConfig(argv, {}, 'h'), new ConfigError(message));
    }
  });

  it('reads the reconcile deadline from --reconcile-timeout or its environment; 0 is none', () => {
    const timeout = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const parsed = parseConfig(argv, env, 'host-1');
      assert.equal(parsed.kind, 'run');
      return parsed.config.reconcileTimeoutSeconds;
    };
    assert.equal(timeout(['--reconcile-timeout=30s']), 30);
    assert.equal(timeout([], { ECHO_OPERATOR_RECONCILE_TIMEOUT: '5m' }), 300);
    assert.equal(timeout(['--reconcile-timeout=0']), 0);
  });

  it('leaves KUBECONFIG to the kubeconfig loader: a list of files, not one path', () => {
    const env = { KUBECONFIG: '/a/config:/b/config' };
    assert.equal(run([], env).kubeconfig, '');
    assert.equal(run(['--kubeconfig=/c/config'], env).kubeconfig, '/c/config');
  });

  it('answers --help and --version', () => {
    assert.equal(parseConfig(['--help'], {}, 'h').kind, 'help');
    assert.equal(parseConfig(['--version'], {}, 'h').kind, 'version');
    assert.match(
      usage('1.0.0'),
      /--bind-address {17}IP address the HTTP port listens on.*\n {33}env ECHO_OPERATOR_BIND_ADDRESS\n/,
    );
  });

  it('refuses bad values with a message naming the flag', () => {
    const cases: [string[], RegExp][] = [
      [['--port=http'], /--port must be a whole number/],
      [['--bind-address=localhost'], /--bind-address must be an IP address such as 127.0.0.1/],
      [['--bind-address=0.0.0.0:8080'], /not "0.0.0.0:8080"/],
      [['--bind-address=[::1]'], /--bind-address must be an IP address/],
      [['--concurrency=0'], /--concurrency must be a whole number from 1/],
      [['--log-format=xml'], /--log-format must be text or json/],
      [['--trace-sample-ratio=2'], /--trace-sample-ratio must be a number from 0 to 1/],
      [['--otlp-endpoint=not a url'], /--otlp-endpoint must be a URL/],
      [['--otlp-protocol=thrift'], /--otlp-protocol must be grpc or http\/json/],
      [['--namespaces=Bad_NS'], /"Bad_NS" is not a namespace name/],
      [['--resync-period=soon'], /--resync-period must be a duration/],
      [['--reconcile-timeout=0s'], /--reconcile-timeout must be a duration/],
      [['--reconcile-timeout=-1'], /--reconcile-timeout must be a duration/],
      [['--no-such-flag'], /Unknown option '--no-such-flag'/],
      [['--leader-elect=yes'], /--leader-elect must be true or false/],
      [['--leader-elect-namespace=Echo'], /"Echo" is not a namespace name/],
      [['--leader-elect-lease-name=a_b'], /"a_b" is not a valid object name/],
      [['--sharding=yes'], /--sharding must be true or false, not "yes"/],
      [['--sharding-buckets=24'], /--sharding-buckets: .*power of two from 1 to 256, not 24/],
      [['--sharding-buckets=many'], /--sharding-buckets: .*not "many"/],
      [
        ['--leader-elect-lease-duration=10s'],
        /lease duration must be longer than the renew deadline/,
      ],
      [['--leader-elect-retry-period=9s'], /renew deadline must be longer than 1.2 × the retry/],
    ];
    for (const [argv, message] of cases) {
      assert.throws(
        () => parseConfig(argv, {}, 'h'),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
    }
  });
});

describe('duration', () => {
  it('reads seconds, minutes and hours', () => {
    assert.equal(duration('x', '45'), 45);
    assert.equal(duration('x', '30s'), 30);
    assert.equal(duration('x', '10m'), 600);
    assert.equal(duration('x', '2h'), 7200);
    assert.throws(() => duration('x', '0s'), ConfigError);
  });

  it("refuses what Node's timers cannot wait, which would fire at once instead", () => {
    assert.equal(duration('x', '596h'), 596 * 3600);
    assert.throws(() => duration('x', '597h'), /--x must be at most 596h, not "597h"/);
  });
});
