/**
 * grpc-js gives tls.connect the target's host as `servername` even when it is an IP address
 * (grpc/grpc-node#1919), and Node then warns DEP0123 on every call: RFC 6066 allows no IP
 * addresses in SNI. The CLI drops such a servername before the handshake; the certificate is
 * still checked against the address (tls.connect checks `host` when there is no servername).
 */
import { isIP } from "node:net";
import tls from "node:tls";

let installed = false;

/** Makes every later tls.connect of this process send no IP address as SNI (idempotent). */
export function omitIpServerName(): void {
  if (installed) return;
  installed = true;
  const connect = tls.connect as (...args: unknown[]) => tls.TLSSocket;
  const patched = (...args: unknown[]): tls.TLSSocket => {
    const o = args[0];
    if (typeof o === "object" && o !== null && "servername" in o) {
      const name = (o as tls.ConnectionOptions).servername;
      if (typeof name === "string" && isIP(name) !== 0) {
        const { servername: _ip, ...rest } = o as tls.ConnectionOptions;
        args[0] = rest;
      }
    }
    return connect.apply(tls, args);
  };
  (tls as { connect: unknown }).connect = patched;
}
