/**
 * One small mapping per component: the resolved Config in, that component's options out. The
 * defaults are the schema's (src/config.ts); nothing here invents a value.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config.js";
import { Subnet } from "../netstack/address.js";
import type { NICOptions, StackOptions } from "../netstack/stack.js";
import {
  DECISION_SETTING_KEYS,
  decisionOf,
  loadAuthz,
  type SecurityOptions,
  type ServiceOptions,
} from "../service/index.js";
import type { KernelSide } from "../service/network.js";
import { MAX_CONNECTIONS_OPTION } from "../service/server.js";
import { pick } from "./reloadable.js";
import { StartupError } from "./startup-error.js";

/** The NIC the configuration's addresses and routes live on. */
export const NIC_ID = 1;

export function stackOptionsOf(c: Config): StackOptions {
  return {
    defaultTTL: c.defaultTtl,
    icmpRateLimit: c.icmpRateLimit,
    icmpBurst: c.icmpBurst,
    ipv4ReassemblyTimeoutMs: c.ipv4ReassemblyTimeoutMs,
    ipv6ReassemblyTimeoutMs: c.ipv6ReassemblyTimeoutMs,
    reassemblyHighThreshold: c.reassemblyHighThreshold,
    reassemblyLowThreshold: c.reassemblyLowThreshold,
    maxReassembledDatagramSize: c.maxReassembledDatagramSize,
  };
}

export function nicOptionsOf(c: Config): NICOptions {
  return { name: c.tun, promiscuous: c.promiscuous, spoofing: c.promiscuous };
}

/** The service's own options (what it is given to work with is added by the root). */
export function serviceOptionsOf(
  c: Config,
): Omit<ServiceOptions, "security" | "stack" | "telemetry" | "operator" | "stats"> {
  return {
    listen: c.listen,
    ...decisionOf(pick(c, DECISION_SETTING_KEYS)),
    temporaryReply: c.temporaryReply,
    drainTimeoutMs: c.drainTimeout,
    limits: {
      defaultMaxInFlight: c.maxInFlight,
      maxBatch: c.maxBatch,
      observerQueue: c.observerQueue,
    },
    syntheticWindowMs: c.syntheticWindow,
    helloTimeoutMs: c.helloTimeout,
    grpcOptions: { [MAX_CONNECTIONS_OPTION]: c.maxConnections },
  };
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new StartupError(`${what} ${path}: ${(e as Error).message}`);
  }
}

/** The TLS files as their options name them; throws a StartupError naming the file. */
export interface TlsSettings {
  tlsCert?: Buffer;
  tlsKey?: Buffer;
  tlsClientCa?: Buffer;
}

export function tlsSettingsOf(c: Config): TlsSettings {
  if (c.tlsCert === undefined || c.tlsKey === undefined) return {};
  return {
    tlsCert: readPem("--tls-cert", c.tlsCert),
    tlsKey: readPem("--tls-key", c.tlsKey),
    tlsClientCa:
      c.tlsClientCa === undefined ? undefined : readPem("--tls-client-ca", c.tlsClientCa),
  };
}

type AuthSettings = Pick<SecurityOptions, "token" | "authz" | "allowUnauthenticated">;

/** The token and the authorization file (read now); throws a StartupError naming the file. */
export function authSettingsOf(c: Config): AuthSettings {
  const allowUnauthenticated = c.allowUnauthenticated;
  if (c.authz === undefined) return { token: c.token, allowUnauthenticated };
  const authz = loadAuthz(c.authz);
  if (typeof authz === "string") throw new StartupError(`--authz: ${authz}`);
  return { token: c.token, authz, allowUnauthenticated };
}

/** Who may call, and over what: the TLS files, the token and the authorization file. */
export function securityOf(tls: TlsSettings, auth: AuthSettings): SecurityOptions {
  const out: SecurityOptions = { ...auth };
  if (tls.tlsCert !== undefined && tls.tlsKey !== undefined)
    out.tls = { cert: tls.tlsCert, key: tls.tlsKey, clientCa: tls.tlsClientCa };
  return out;
}

/** What run-time address and route changes may touch (the kernel side only when icmpfwd owns it). */
export function networkControlOptionsOf(c: Config, run: KernelSide["run"]): KernelSide {
  const managed = kernelSideManaged(c);
  const subnets = (list: readonly string[]): Subnet[] =>
    list.flatMap((t) => {
      const s = Subnet.parse(t);
      return s === null ? [] : [s];
    });
  return {
    device: deviceOf(c),
    managed,
    coveredSubnets: managed ? subnets(c.kernelAddresses) : [],
    ownedRoutes: managed ? subnets(c.routes) : [],
    run,
  };
}

/** The TUN device's name: the attached one, or the one icmpfwd creates. */
export function deviceOf(c: Config): string {
  return c.tunAttach ?? c.tun;
}

/** Whether icmpfwd configures the device's kernel side (a persistent device's is its administrator's). */
export function kernelSideManaged(c: Config): boolean {
  return c.configureKernel && c.tunAttach === undefined;
}
