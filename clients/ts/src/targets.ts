/**
 * Target lists (docs/cli-contract.md "Targets"): comma-separated `host:port`, `[v6]:port`,
 * `unix:/path` (one service each) and `dns:///name:port` (every address the name resolves to).
 */
import { lookup } from "node:dns/promises";
import { isIPv6 } from "node:net";

export const DEFAULT_TARGET = "127.0.0.1:50051";
export const DEFAULT_RESOLVE_INTERVAL_MS = 30_000;

/** The library's default: env ICMPFWD_TARGET, else 127.0.0.1:50051. */
export function defaultTarget(env: NodeJS.ProcessEnv = process.env): string {
  const t = env.ICMPFWD_TARGET?.trim();
  return t === undefined || t === "" ? DEFAULT_TARGET : t;
}

export type TargetSpec =
  /** One service: a grpc-js target as given. */
  | { kind: "service"; target: string }
  /** Every A/AAAA address of `host`, on `port`. */
  | { kind: "dns"; host: string; port: number; text: string };

export class TargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TargetError";
  }
}

const PORT = /^\d{1,5}$/;

function splitHostPort(s: string, what: string, want: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(.+)$/.exec(s) ?? /^([^:[\]]+):([^:]+)$/.exec(s);
  if (m === null || !PORT.test(m[2]) || Number(m[2]) < 1 || Number(m[2]) > 65_535) {
    throw new TargetError(`bad target ${what}: want ${want}`);
  }
  return { host: m[1], port: Number(m[2]) };
}

/** Parses a target list; throws TargetError naming the bad element. */
export function parseTargets(list: string): TargetSpec[] {
  const items = list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new TargetError("empty target list");
  return items.map((t): TargetSpec => {
    if (t.startsWith("dns:")) {
      if (!t.startsWith("dns:///")) throw new TargetError(`bad target ${t}: want dns:///name:port`);
      const { host, port } = splitHostPort(t.slice("dns:///".length), t, "dns:///name:port");
      return { kind: "dns", host, port, text: t };
    }
    if (t.startsWith("unix:")) {
      if (t.length === "unix:".length) throw new TargetError(`bad target ${t}: no path`);
      return { kind: "service", target: t };
    }
    splitHostPort(t, t, "host:port, [v6]:port, unix:/path or dns:///name:port");
    return { kind: "service", target: t };
  });
}

/** Every address a name resolves to (A and AAAA), deduplicated. */
export type Resolver = (host: string) => Promise<string[]>;

/** getaddrinfo (so /etc/hosts counts too), every family, in the resolver's order. */
export const systemResolver: Resolver = async (host) => {
  const all = await lookup(host, { all: true, order: "verbatim" });
  return [...new Set(all.map((a) => a.address))];
};

/** The grpc-js target for one resolved address. */
export function addressTarget(address: string, port: number): string {
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}
