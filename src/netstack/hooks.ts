/**
 * Packet hooks at gVisor's netfilter hook points (stack/iptables.go: Prerouting, Input, Output,
 * Postrouting), without its rule language: each point holds an ordered chain of functions that
 * accept, drop or rewrite the packet.
 *
 * - prerouting: every received IPv4/IPv6 packet whose IP header is valid, before the address
 *   checks and before reassembly (so it sees fragments one by one).
 * - input: a datagram for this host (reassembled if it came in fragments), before the options /
 *   extension headers above it and ICMP are processed.
 * - output: every packet the stack sends — built-in Echo Replies, ICMP errors, synthetic replies,
 *   ping endpoint writes — before postrouting.
 * - postrouting: after output, before fragmentation to the MTU (so it sees whole datagrams).
 *
 * (gVisor's Forward point is not offered: this stack does not forward.)
 *
 * Rewrites: a hook returns a new or modified Uint8Array holding the whole IP packet. The stack
 * re-checks a rewritten received packet's IP header (version, lengths, IPv4 header checksum) and
 * counts a bad one malformed; it never recomputes a checksum on a hook's behalf. Keeping the
 * IPv4 header checksum and the ICMP / ICMPv6 checksums right after a rewrite is the hook's
 * responsibility (header/checksum.ts has the RFC 1071 / RFC 1624 helpers). A rewrite at input
 * keeps the addresses' meaning: the destination was matched before the hook ran; for IPv6 it
 * keeps the extension header layout. A hook must not keep `packet` or `ctx` after it returns.
 *
 * A hook that throws drops the packet (fail closed) and is counted in `errors`.
 */
import type { NetworkProtocolNumber } from "./buffer.js";
import type { HookPointStats, HookStats } from "./stats.js";

export type HookPoint = "prerouting" | "input" | "output" | "postrouting";

export const HOOK_POINTS: readonly HookPoint[] = ["prerouting", "input", "output", "postrouting"];

/** Accept (the next hook sees the packet), drop, or a rewritten packet (the next hook sees it). */
export type HookVerdict = "accept" | "drop" | Uint8Array;

export interface HookContext {
  readonly point: HookPoint;
  readonly netProto: NetworkProtocolNumber;
  /** The NIC the packet arrived on (prerouting, input) or leaves through (output, postrouting). */
  readonly nicId: number;
}

export type PacketHook = (packet: Uint8Array, ctx: HookContext) => HookVerdict;

export interface AddHookOptions {
  /** For the counters and errors; default `hook<n>`. */
  name?: string;
  /** Lower runs first (as iptables priorities); equal priorities run in the order added. */
  priority?: number;
}

/** What one hook decided, counted per verdict. */
export interface HookCounters {
  accepted: number;
  dropped: number;
  rewritten: number;
  errors: number;
}

/** A registered hook: its counters, and how to remove it. */
export interface HookHandle {
  readonly name: string;
  readonly point: HookPoint;
  readonly priority: number;
  readonly counters: Readonly<HookCounters>;
  /** Removes the hook; a second call does nothing. */
  remove(): void;
}

interface Entry {
  readonly fn: PacketHook;
  readonly handle: HookHandle;
  readonly counters: HookCounters;
  readonly priority: number;
  readonly seq: number;
}

/** The four chains of a stack. Chains are arrays: an empty one costs one length check. */
export class HookChains {
  prerouting: readonly Entry[] = [];
  input: readonly Entry[] = [];
  output: readonly Entry[] = [];
  postrouting: readonly Entry[] = [];
  private seq = 0;
  private readonly ctx: { point: HookPoint; netProto: NetworkProtocolNumber; nicId: number } = {
    point: "prerouting",
    netProto: 0x0800,
    nicId: 0,
  };

  constructor(private readonly stats: HookStats) {}

  add(point: HookPoint, fn: PacketHook, options: AddHookOptions = {}): HookHandle {
    if (!HOOK_POINTS.includes(point)) throw new TypeError(`unknown hook point ${String(point)}`);
    if (typeof fn !== "function") throw new TypeError("a hook must be a function");
    const seq = this.seq++;
    const priority = options.priority ?? 0;
    const counters: HookCounters = { accepted: 0, dropped: 0, rewritten: 0, errors: 0 };
    let removed = false;
    const handle: HookHandle = {
      name: options.name ?? `hook${seq}`,
      point,
      priority,
      counters,
      remove: () => {
        if (removed) return;
        removed = true;
        this[point] = this[point].filter((e) => e.handle !== handle);
      },
    };
    const entry: Entry = { fn, handle, counters, priority, seq };
    // A new array each time: a chain being run keeps the array it started with.
    this[point] = [...this[point], entry].sort((a, b) => a.priority - b.priority || a.seq - b.seq);
    return handle;
  }

  /**
   * Runs one chain over `packet`: returns the packet to go on with (the same array when every
   * hook accepted, the last rewrite otherwise), or null when a hook dropped it.
   */
  run(
    point: HookPoint,
    packet: Uint8Array,
    netProto: NetworkProtocolNumber,
    nicId: number,
  ): Uint8Array | null {
    const chain = this[point];
    const pointStats: HookPointStats = this.stats[point];
    const ctx = this.ctx;
    let current = packet;
    for (const e of chain) {
      ctx.point = point;
      ctx.netProto = netProto;
      ctx.nicId = nicId;
      let verdict: HookVerdict;
      try {
        verdict = e.fn(current, ctx);
      } catch {
        e.counters.errors++;
        e.counters.dropped++;
        pointStats.errors++;
        pointStats.dropped++;
        return null;
      }
      if (verdict === "accept") {
        e.counters.accepted++;
      } else if (verdict instanceof Uint8Array) {
        e.counters.rewritten++;
        current = verdict;
      } else {
        // "drop", and anything that is not a verdict (fail closed).
        e.counters.dropped++;
        pointStats.dropped++;
        return null;
      }
    }
    if (current === packet) pointStats.accepted++;
    else pointStats.rewritten++;
    return current;
  }
}
