/**
 * The relay: sends a consumed Echo Request on to its real destination from this host and
 * reports what came back — the Echo Reply (after the real round trip), the ICMP error a router
 * on the way sent (Time Exceeded, Destination Unreachable: what traceroute needs), or nothing
 * within the budget.
 *
 * Each probe goes out with the request's TTL / hop limit and payload but an ident and sequence
 * of the relay's own; answers are mapped back by the sequence (an error's by the Echo header it
 * quotes). Raw ICMP sockets (CAP_NET_RAW) see every ICMP message, so a raw socket's answers must
 * also carry our ident; a datagram socket (the kernel's unprivileged ping socket) gets only its
 * own, the kernel having rewritten the ident, and the routers' errors through its error queue.
 */
import { tokenBuckets } from "../buckets.js";
import type { SyntheticErrorName } from "../types.js";
import type { AllowList } from "./allow-list.js";
import { type IcmpAddon, type IcmpSocket, loadIcmpAddon } from "./icmp-socket.js";
import {
  echoRequest,
  type ProbeMessage,
  parseMessage,
  parseQueuedError,
  stripIpv4Header,
} from "./packets.js";
import { ProbeTable } from "./probe-table.js";

/** One Echo Request to relay. */
export interface Probe {
  /** The request's source: the rate limit's key. */
  source: string;
  destination: string;
  /** The request's TTL / hop limit: the probe leaves with it (0: 64). */
  ttl: number;
  payload: Uint8Array;
}

/** What came back for one probe. */
export type Answer =
  | { kind: "reply"; rttMs: number }
  | { kind: "error"; error: SyntheticErrorName; from: string; rttMs: number }
  | { kind: "nothing" };

export interface RelayOptions {
  /** The only destinations probes may go to (required: no open relay). */
  allow: AllowList;
  /** A token bucket per request source: probes per second, bucket size. */
  rate: number;
  burst: number;
  /** How long to wait for an answer (keep it inside the service's synthetic window). */
  budgetMs: number;
  /** Raw sockets (needs CAP_NET_RAW); else the kernel's unprivileged ICMP datagram sockets. */
  raw: boolean;
  /** Probes in flight per family (default 4096). */
  maxInFlight?: number;
  /** The socket addon (tests pass a fake). */
  addon?: IcmpAddon;
  now?: () => number;
}

interface Waiter {
  sentAt: number;
  resolve: (a: Answer) => void;
}

/** One family's socket and its probes in flight. */
interface Family {
  v6: boolean;
  socket: IcmpSocket;
  table: ProbeTable<Waiter>;
}

export class Relay {
  private readonly ident = Math.floor(Math.random() * 0x10000);
  private readonly families: { v4: Family | null; v6: Family | null };
  private readonly buckets: { take(key: string): boolean };
  private readonly now: () => number;
  private readonly timers = new Set<NodeJS.Timeout>();

  /**
   * Opens both families' sockets; a family whose socket cannot be opened is refused per probe.
   * Throws when neither opens (each family's errno in the message), or without the addon.
   */
  constructor(private readonly o: RelayOptions) {
    if (o.allow.empty) throw new Error("relay: the allow list is required (no open relay)");
    if (!(o.budgetMs > 0)) throw new Error("relay: the budget must be positive");
    this.now = o.now ?? Date.now;
    this.buckets = tokenBuckets(o.rate, o.burst, this.now);
    const addon = o.addon ?? loadIcmpAddon();
    const errors: string[] = [];
    const open = (v6: boolean): Family | null => {
      try {
        const table = new ProbeTable<Waiter>(o.maxInFlight ?? 4096, o.budgetMs, this.now);
        const f: Family = { v6, table, socket: null as unknown as IcmpSocket };
        f.socket = addon.open(v6 ? 6 : 4, o.raw, (data, from, type, code) =>
          this.received(f, data, from, type, code),
        );
        return f;
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
        return null;
      }
    };
    this.families = { v4: open(false), v6: open(true) };
    if (this.families.v4 === null && this.families.v6 === null) {
      throw new Error(`relay: no ICMP socket: ${errors.join("; ")}`);
    }
  }

  /** Closes the sockets; probes waiting get nothing. */
  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const f of [this.families.v4, this.families.v6]) f?.socket.close();
  }

  private familyOf(address: string): Family | null {
    return address.includes(":") && !address.startsWith("::ffff:")
      ? this.families.v6
      : this.families.v4;
  }

  /**
   * Why `p` may not be relayed now (allow list, a socket for its family, the source's rate
   * limit), or null when it may: then it has taken a token from the source's bucket.
   */
  check(p: Probe): string | null {
    if (!this.o.allow.contains(p.destination)) return `${p.destination} is outside --allow`;
    if (this.familyOf(p.destination) === null) return `no ICMP socket for ${p.destination}`;
    if (!this.buckets.take(p.source)) return `${p.source} is over the rate limit`;
    return null;
  }

  /** Relays `p` (check it first) and resolves with what came back within the budget. */
  send(p: Probe): Promise<Answer> {
    const f = this.familyOf(p.destination);
    if (f === null) return Promise.reject(new Error(`no ICMP socket for ${p.destination}`));
    const destination = p.destination.startsWith("::ffff:")
      ? p.destination.slice(7)
      : p.destination;
    return new Promise<Answer>((resolve, reject) => {
      const waiter: Waiter = { sentAt: this.now(), resolve };
      const sequence = f.table.add(waiter);
      if (sequence === null) {
        reject(new Error(`${f.table.capacity} probes in flight`));
        return;
      }
      try {
        f.socket.send(echoRequest(f.v6, this.ident, sequence, p.payload), destination, p.ttl || 64);
      } catch (e) {
        f.table.take(sequence);
        reject(e);
        return;
      }
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (f.table.take(sequence) !== undefined) resolve({ kind: "nothing" });
      }, this.o.budgetMs);
      this.timers.add(t);
      waiter.resolve = (a) => {
        clearTimeout(t);
        this.timers.delete(t);
        resolve(a);
      };
    });
  }

  /** One message from a socket: the answer to a probe in flight, or not ours. */
  private received(f: Family, data: Uint8Array, from: string, type: number, code: number): void {
    let m: ProbeMessage | null;
    if (type >= 0) {
      m = parseQueuedError(data, f.v6, type, code);
    } else {
      const icmp = this.o.raw && !f.v6 ? stripIpv4Header(data) : data;
      m = icmp === null ? null : parseMessage(icmp, f.v6);
      // A raw socket sees every Echo Reply and error of the host: ours carry our ident.
      if (m !== null && this.o.raw && m.ident !== this.ident) m = null;
    }
    if (m === null) return;
    const w = f.table.take(m.sequence);
    if (w === undefined) return; // late, or a duplicate
    const rttMs = this.now() - w.sentAt;
    w.resolve(
      m.kind === "reply"
        ? { kind: "reply", rttMs }
        : { kind: "error", error: m.error, from, rttMs },
    );
  }
}
