// The metrics port's certificate, as controller-runtime finds one: tls.crt and tls.key in a
// directory (a cert-manager Secret mounted there), read again when they change, as its certwatcher
// does; or, without a directory, a self-signed one made in memory at start.
import { createSecureContext } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Certificate } from './server.ts';

/** The file names of a `kubernetes.io/tls` Secret, as controller-runtime reads them. */
export const CERT_FILE = 'tls.crt';
export const KEY_FILE = 'tls.key';

/**
 * How often the directory is read again: a mounted Secret changes by swapping a symlink, which a
 * file watch can miss, and two small reads every 10 s cost nothing (certwatcher polls as often).
 */
export const CERT_POLL_MS = 10_000;

/** tls.crt and tls.key of `dir`, checked to form a usable pair; a plain Error naming what is wrong. */
export async function loadCertificate(dir: string): Promise<Certificate> {
  const read = async (file: string): Promise<string> => {
    try {
      return await readFile(join(dir, file), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : (err as Error).message;
      throw new Error(`metrics certificate: cannot read ${join(dir, file)}: ${why}`, {
        cause: err,
      });
    }
  };
  const certificate = { cert: await read(CERT_FILE), key: await read(KEY_FILE) };
  try {
    createSecureContext(certificate);
  } catch (err) {
    throw new Error(
      `metrics certificate: ${CERT_FILE} and ${KEY_FILE} in ${dir} are not a usable pair: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return certificate;
}

/**
 * Reads `dir` every `intervalMs` and passes a certificate that changed and is usable to
 * `onChange`; a read or pair that fails (a Secret mid-update) keeps the one served, and is told to
 * `onError` once until it changes. Returns the function that stops watching.
 */
export function watchCertificate(
  dir: string,
  served: Certificate,
  onChange: (certificate: Certificate) => void,
  onError: (err: Error) => void,
  intervalMs = CERT_POLL_MS,
): () => void {
  let current = served;
  let lastError = '';
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    reading = true;
    loadCertificate(dir)
      .then((next) => {
        lastError = '';
        if (next.cert === current.cert && next.key === current.key) return;
        current = next;
        onChange(next);
      })
      .catch((err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        if (error.message !== lastError) onError(error);
        lastError = error.message;
      })
      .finally(() => {
        reading = false;
      });
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}

/**
 * A self-signed certificate for this host name and localhost, valid for a year, made in memory
 * (controller-runtime's default without a certificate directory): Prometheus scrapes it with
 * `insecureSkipVerify`, the bearer token being what authenticates.
 *
 * A library, not node:crypto alone: Node signs but cannot build an X.509 certificate, and encoding
 * one in DER by hand is the kind of code that fails quietly. PKI.js (PeculiarVentures, on the
 * WebCrypto Node ships) does it without the global Reflect polyfill @peculiar/x509 needs. It is
 * imported only here, on the first call, so plain metrics and a certificate directory never load it.
 */
export async function selfSignedCertificate(
  hosts: string[] = [hostname(), 'localhost'],
): Promise<Certificate> {
  const [pkijs, asn1js, { webcrypto, randomBytes }] = await Promise.all([
    import('pkijs'),
    import('asn1js'),
    import('node:crypto'),
  ]);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const certificate = new pkijs.Certificate();
  certificate.version = 2; // X.509 v3
  // Positive: a serial's first bit set would read as negative.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  certificate.serialNumber = new asn1js.Integer({ valueHex: serial });
  const name = new pkijs.AttributeTypeAndValue({
    type: '2.5.4.3', // commonName
    value: new asn1js.Utf8String({ value: hosts[0] ?? 'localhost' }),
  });
  certificate.subject.typesAndValues.push(name);
  certificate.issuer.typesAndValues.push(name);
  const now = Date.now();
  // An hour back: a scraper whose clock is a little behind still sees it valid.
  certificate.notBefore.value = new Date(now - 3600_000);
  certificate.notAfter.value = new Date(now + 365 * 86400_000);
  const altNames = new pkijs.GeneralNames({
    names: hosts.map((value) => new pkijs.GeneralName({ type: 2, value })), // dNSName
  });
  certificate.extensions = [
    new pkijs.Extension({
      extnID: '2.5.29.17', // subjectAltName
      critical: false,
      extnValue: altNames.toSchema().toBER(false),
    }),
  ];
  await certificate.subjectPublicKeyInfo.importKey(keys.publicKey);
  await certificate.sign(keys.privateKey, 'SHA-256');
  const der = certificate.toSchema(true).toBER(false);
  const key = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: pem('CERTIFICATE', der), key: pem('PRIVATE KEY', key) };
}

function pem(label: string, der: ArrayBuffer): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
