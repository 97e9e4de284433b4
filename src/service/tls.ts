/**
 * The server's TLS credentials, rotatable at run time through grpc-js's certificate-provider
 * API: the server's key and certificate (and the client CA, for mTLS) live in a provider of our
 * own that a reload pushes the new PEM bytes into, after checking that they load. grpc-js then
 * gives new handshakes the new certificate; connections already up keep theirs.
 */
import { createSecureContext } from "node:tls";
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
    createSecureContext({ cert: tls.cert, key: tls.key, ca: tls.clientCa, minVersion: "TLSv1.2" });
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/**
 * A CertificateProvider holding PEM bytes in memory. Listeners hear the current bytes on the
 * next tick after they register (grpc-js registers before it starts watching, so a synchronous
 * call would go unheard), then every update.
 */
export class PemCertificateProvider implements experimental.CertificateProvider {
  private identity: experimental.IdentityCertificateUpdate;
  private ca: experimental.CaCertificateUpdate | null;
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();

  constructor(tls: TlsFiles) {
    this.identity = { certificate: tls.cert, privateKey: tls.key };
    this.ca = tls.clientCa === undefined ? null : { caCertificate: tls.clientCa };
  }

  /** Whether it provides a client CA (the server asks clients for certificates). */
  get hasCa(): boolean {
    return this.ca !== null;
  }

  /**
   * New bytes for new handshakes. The client CA is replaced only when the provider has one and
   * `tls` names one; otherwise the CA stays as it is.
   */
  update(tls: TlsFiles): void {
    if (this.ca !== null && tls.clientCa !== undefined) {
      const ca = { caCertificate: tls.clientCa };
      this.ca = ca;
      for (const l of this.caListeners) l(ca);
    }
    const identity = { certificate: tls.cert, privateKey: tls.key };
    this.identity = identity;
    for (const l of this.identityListeners) l(identity);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(() => {
      if (this.identityListeners.has(listener)) listener(this.identity);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(() => {
      if (this.caListeners.has(listener)) listener(this.ca);
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
}

/** Where TLS credentials keep their provider (a symbol: no clash with grpc-js's own fields). */
const PROVIDER: unique symbol = Symbol("icmpfwd.tls.provider");

/** Plaintext credentials, or TLS credentials served from a PemCertificateProvider. */
export function serverCredentials(tls: TlsFiles | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
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
