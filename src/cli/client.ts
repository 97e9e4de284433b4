/**
 * The client subcommands (`icmpfwd stats|sessions|ping|health`): one connection to a running
 * service, with the same connection and auth flags, human-readable tables by default and
 * `--json` for scripts.
 */
import { readFileSync } from "node:fs";
import {
  type CallOptions,
  type ChannelCredentials,
  credentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  type ConfigChange,
  EchoAdminClient,
  type GetNetworkResponse,
} from "../gen/icmpfwd/v1/admin.js";
import {
  EchoForwarderClient,
  Family,
  type GetStatsResponse,
  Mode,
  type PingEvent,
  type Session,
} from "../gen/icmpfwd/v1/forwarder.js";
import { formatAddress } from "../netstack/address.js";
import { ClientError } from "./errors.js";
import { omitIpServerName } from "./tls-server-name.js";

export interface ConnectionFlags {
  target: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Seconds to wait for the connection and each unary call. */
  timeout: number;
}

export { ClientError };

/** grpc_health_probe's exit code for a TLS file it cannot load. */
const TLS_CREDENTIALS_PROBLEM = 20;

function channelCredentials(f: ConnectionFlags): ChannelCredentials {
  if (f.tlsCa === undefined && f.tlsCert === undefined) return credentials.createInsecure();
  omitIpServerName();
  const read = (flag: string, path: string | undefined): Buffer | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ClientError(`${flag} ${path}: ${(e as Error).message}`, TLS_CREDENTIALS_PROBLEM);
    }
  };
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined))
    throw new ClientError("--tls-cert and --tls-key go together");
  return credentials.createSsl(
    read("--tls-ca", f.tlsCa),
    read("--tls-key", f.tlsKey),
    read("--tls-cert", f.tlsCert),
  );
}

export class ServiceClient {
  readonly client: EchoForwarderClient;
  /** EchoAdmin (admin.proto), over the same channel. */
  readonly admin: EchoAdminClient;

  constructor(readonly f: ConnectionFlags) {
    this.client = new EchoForwarderClient(f.target, channelCredentials(f));
    this.admin = new EchoAdminClient(f.target, channelCredentials(f), {
      channelOverride: this.client.getChannel(),
    });
  }

  /** One EchoAdmin unary call with this client's metadata and deadline. */
  call<Req, Res>(
    method: (
      req: Req,
      md: Metadata,
      o: Partial<CallOptions>,
      cb: (e: ServiceError | null, r: Res) => void,
    ) => unknown,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) =>
      method.call(this.admin, req, this.metadata(), this.options(), (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  }

  metadata(): Metadata {
    const m = new Metadata();
    if (this.f.token !== undefined) m.set("authorization", `Bearer ${this.f.token}`);
    return m;
  }

  options(): CallOptions {
    return { deadline: Date.now() + this.f.timeout * 1000 };
  }

  getStats(): Promise<GetStatsResponse> {
    return new Promise((resolve, reject) =>
      this.client.getStats({}, this.metadata(), this.options(), (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  }

  listSessions(): Promise<Session[]> {
    return new Promise((resolve, reject) =>
      this.client.listSessions({}, this.metadata(), this.options(), (e, r) =>
        e ? reject(e) : resolve(r.sessions),
      ),
    );
  }

  close(): void {
    this.admin.close();
    this.client.close();
  }
}

/** `icmpfwd reload`: the options that changed, or a line saying none did. */
export function reloadTable(changes: readonly ConfigChange[]): string {
  if (changes.length === 0) return "configuration reloaded: nothing changed";
  return table(
    ["OPTION", "FROM", "TO"],
    changes.map((c) => [
      c.key,
      c.oldValue,
      c.contentsChanged ? `${c.newValue} (new contents)` : c.newValue,
    ]),
  );
}

/** `icmpfwd addr|route`: the NICs' addresses and modes, then the route table. */
export function networkTable(n: GetNetworkResponse): string {
  const nics = table(
    ["NIC", "NAME", "MODE", "ADDRESSES"],
    n.nics.map((x) => [
      String(x.id),
      x.name,
      x.promiscuous ? "promiscuous" : "-",
      x.addresses.map((a) => a.address).join(" "),
    ]),
  );
  const routes = table(
    ["ROUTE", "NIC", "KERNEL"],
    n.routes.map((r) => [r.destination, String(r.nic), r.kernelRoute ? "added by icmpfwd" : "-"]),
  );
  return `${nics}

${routes}`;
}

export function networkJson(n: GetNetworkResponse): Record<string, unknown> {
  return {
    nics: n.nics.map((x) => ({
      id: x.id,
      name: x.name,
      promiscuous: x.promiscuous,
      spoofing: x.spoofing,
      addresses: x.addresses.map((a) => a.address),
    })),
    routes: n.routes,
    kernelManaged: n.kernelManaged,
  };
}

/** Counters and gauges as plain numbers, for --json. */
export function statsJson(r: GetStatsResponse): Record<string, unknown> {
  const num = (m: Record<string, bigint>) =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v)]));
  const t = r.takenAt;
  return {
    takenAt: t ? new Date(Number(t.seconds) * 1000 + t.nanos / 1e6).toISOString() : null,
    counters: num(r.counters),
    gauges: num(r.gauges),
  };
}

/** Two aligned columns: every gauge, then every non-zero counter (all with `all`). */
export function statsTable(r: GetStatsResponse, all = false): string {
  const rows: [string, string][] = [];
  for (const k of Object.keys(r.gauges).sort()) rows.push([k, String(r.gauges[k])]);
  for (const k of Object.keys(r.counters).sort())
    if (all || r.counters[k] !== 0n) rows.push([k, String(r.counters[k])]);
  return table(["NAME", "VALUE"], rows);
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function modeName(m: Mode): string {
  return m === Mode.MODE_DECIDE ? "decide" : m === Mode.MODE_OBSERVE ? "observe" : "unspecified";
}

/** A session filter's family by name ("any" when it takes both). */
export function familyName(f: Family): string {
  return f === Family.FAMILY_IPV4 ? "ipv4" : f === Family.FAMILY_IPV6 ? "ipv6" : "any";
}

function filterText(s: Session): string {
  const f = s.filter;
  if (f === undefined) return "*";
  const parts = [
    f.family === Family.FAMILY_UNSPECIFIED ? "" : familyName(f.family),
    f.sourcePrefixes.length > 0 ? `src ${f.sourcePrefixes.join(",")}` : "",
    f.destinationPrefixes.length > 0 ? `dst ${f.destinationPrefixes.join(",")}` : "",
    f.temporaryOnly ? "temporary" : "",
  ].filter((p) => p !== "");
  return parts.length === 0 ? "*" : parts.join(" ");
}

function since(s: Session): string {
  const t = s.connectedAt;
  return t ? new Date(Number(t.seconds) * 1000 + t.nanos / 1e6).toISOString() : "";
}

/** `sessions --json`: one object per session (printed one per line). */
export function sessionsJson(ss: Session[]): Record<string, unknown>[] {
  return ss.map((s) => ({
    sessionId: s.sessionId,
    clientName: s.clientName,
    mode: modeName(s.mode),
    filter:
      s.filter === undefined
        ? null
        : {
            family: familyName(s.filter.family),
            sourcePrefixes: s.filter.sourcePrefixes,
            destinationPrefixes: s.filter.destinationPrefixes,
            temporaryOnly: s.filter.temporaryOnly,
          },
    maxInFlight: s.maxInFlight,
    inFlight: s.inFlight,
    decided: Number(s.decided),
    rejections: Number(s.rejections),
    dropped: Number(s.dropped),
    connectedAt: since(s),
    peer: s.peer,
    identity: s.identity,
    draining: s.draining,
  }));
}

export function sessionsTable(ss: Session[]): string {
  return table(
    ["SESSION", "NAME", "MODE", "FILTER", "IN-FLIGHT", "DECIDED", "DROPPED", "PEER", "SINCE"],
    ss.map((s) => [
      s.sessionId.slice(0, 8),
      s.clientName,
      modeName(s.mode) + (s.draining ? " (draining)" : ""),
      filterText(s),
      `${s.inFlight}/${s.maxInFlight}`,
      String(s.decided),
      String(s.dropped),
      s.peer,
      since(s),
    ]),
  );
}

export function rttMs(e: PingEvent): number {
  return e.rtt === undefined ? 0 : Number(e.rtt.seconds) * 1000 + e.rtt.nanos / 1e6;
}

export function pingLine(e: PingEvent, size: number): string {
  if (!e.received) return `no reply for icmp_seq=${e.sequence}`;
  return `${size + 8} bytes from ${formatAddress(e.source)}: icmp_seq=${e.sequence} ttl=${e.ttl} time=${rttMs(e).toFixed(3)} ms`;
}

export function pingJson(e: PingEvent): Record<string, unknown> {
  return {
    sequence: e.sequence,
    received: e.received,
    rttMs: e.received ? rttMs(e) : null,
    ttl: e.received ? e.ttl : null,
    source: e.received ? formatAddress(e.source) : null,
  };
}
