/**
 * The server's TLS credentials, rotatable at run time through grpc-js's certificate-provider
 * API: the server's key and certificate (and the client CA, for mTLS) live in a provider of our
 * own that a reload pushes the new PEM bytes into, after checking that they load. grpc-js then
 * gives new handshakes the new certificate; connections already up keep theirs.
 *
 * The contexts grpc-js makes from a provider's bytes carry no minVersion (nor ciphers), so they
 * take Node's minimum TLS version: TLS ≥ 1.2 holds only while that minimum is 1.2 or above, and
 * serverCredentials() refuses TLS when it is lower (node --tls-min-v1.0 / --tls-min-v1.1).
 */
// The module object, not a namespace: DEFAULT_MIN_VERSION is read (and, in tests, set) live.
import nodeTls from "node:tls";
import { experimental, ServerCredentials } from "@grpc/grpc-js";

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

export interface TlsFiles {
  /** PEM certificate chain of the server. */
  cert: Buffer;
  /** PEM private key of the server. */
  key: Buffer;
  /** PEM CA bundle: when set, clients must present a certificate it signed (mTLS). */
  clientCa?: Buffer;
}

/** Why these files do not make a TLS server context (a key not matching its certificate…); null when they do. */
export function checkTls(tls: TlsFiles): string | null {
  try {
    nodeTls.createSecureContext({
      cert: tls.cert,
      key: tls.key,
      ca: tls.clientCa,
      minVersion: "TLSv1.2",
    });
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/**
 * The listeners of one kind of update. Each hears the current value on the next tick after it
 * registers (grpc-js registers before it starts watching, so a synchronous call would go
 * unheard), then every change.
 */
class Updates<T> {
  private readonly listeners = new Set<(update: T) => void>();

  constructor(private value: T) {}

  get current(): T {
    return this.value;
  }

  set(value: T): void {
    this.value = value;
    for (const l of this.listeners) l(value);
  }

  add(listener: (update: T) => void): void {
    this.listeners.add(listener);
    process.nextTick(() => {
      if (this.listeners.has(listener)) listener(this.value);
    });
  }

  remove(listener: (update: T) => void): void {
    this.listeners.delete(listener);
  }
}

/** A CertificateProvider holding PEM bytes in memory; a reload pushes new ones (update()). */
export class PemCertificateProvider implements experimental.CertificateProvider {
  private readonly identity: Updates<experimental.IdentityCertificateUpdate>;
  private readonly ca: Updates<experimental.CaCertificateUpdate | null>;

  constructor(tls: TlsFiles) {
    this.identity = new Updates({ certificate: tls.cert, privateKey: tls.key });
    this.ca = new Updates(tls.clientCa === undefined ? null : { caCertificate: tls.clientCa });
  }

  /** Whether it provides a client CA (the server asks clients for certificates). */
  get hasCa(): boolean {
    return this.ca.current !== null;
  }

  /**
   * New bytes for new handshakes. The client CA is replaced only when the provider has one and
   * `tls` names one; otherwise the CA stays as it is.
   */
  update(tls: TlsFiles): void {
    if (this.hasCa && tls.clientCa !== undefined) this.ca.set({ caCertificate: tls.clientCa });
    this.identity.set({ certificate: tls.cert, privateKey: tls.key });
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identity.add(listener);
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identity.remove(listener);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.ca.add(listener);
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.ca.remove(listener);
  }
}

/** Where TLS credentials keep their provider (a symbol: no clash with grpc-js's own fields). */
const PROVIDER: unique symbol = Symbol("icmpfwd.tls.provider");

/** The TLS versions Node's minimum may be at for the server to keep its TLS ≥ 1.2 promise. */
const MODERN_TLS: readonly string[] = ["TLSv1.2", "TLSv1.3"];

/**
 * Plaintext credentials, or TLS credentials served from a PemCertificateProvider. Throws (as a
 * failed bind does) when Node's minimum TLS version is below 1.2.
 */
export function serverCredentials(tls: TlsFiles | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const floor = nodeTls.DEFAULT_MIN_VERSION;
  if (!MODERN_TLS.includes(floor))
    throw new Error(
      `TLS needs Node's minimum TLS version at TLSv1.2 or above; it is ${floor} (--tls-min-v1.0 or --tls-min-v1.1?)`,
    );
  const provider = new PemCertificateProvider(tls);
  // grpc-js 1.14 takes the identity provider first (whatever its parameter is called); with a
  // client CA the same provider serves both, so the order does not matter there.
  const creds = experimental.createCertificateProviderServerCredentials(
    provider,
    provider.hasCa ? provider : null,
    provider.hasCa,
  );
  return Object.assign(creds, { [PROVIDER]: provider });
}

/**
 * TLS certificate rotation: the new key and certificates are checked first (a key that does not
 * match its certificate is refused with the reason, and the old ones stay); then they apply to
 * handshakes from now on, and connections already up keep theirs, so no session is dropped.
 * Plaintext credentials have nothing to rotate. A reason string, or null.
 */
export function rotateTls(creds: ServerCredentials, tls: TlsFiles): string | null {
  const why = checkTls(tls);
  if (why !== null) return why;
  if (PROVIDER in creds && creds[PROVIDER] instanceof PemCertificateProvider)
    creds[PROVIDER].update(tls);
  return null;
}
