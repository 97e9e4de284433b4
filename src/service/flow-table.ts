/**
 * Tables keyed by flow — (source, destination, ident), NFQUEUE users' conntrack entry: the flow
 * verdicts (`apply_to_flow_ms`) and the session each flow is pinned to (flow affinity). Both are
 * bounded: when full, the oldest entry goes.
 */
import { type Address, addressKey } from "../netstack/address.js";
import type { OutcomeAction } from "./outcomes.js";

/** A Map key for a flow: one latin1 character per address byte, then the ident. */
export function flowKey(source: Address, destination: Address, ident: number): string {
  // IPv4, the common case, in one flat string (no concatenation on the hot path).
  if (source.length === 4 && destination.length === 4) {
    const s = source;
    const d = destination;
    return String.fromCharCode(s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], ident);
  }
  return addressKey(source) + addressKey(destination) + String.fromCharCode(ident);
}

/** Whoever owns an entry: its entries go when it ends. */
export interface FlowOwner {
  readonly closed: boolean;
}

interface FlowVerdict<O> {
  readonly action: OutcomeAction;
  readonly expiresAtMs: number;
  readonly owner: O;
}

/** Flow verdicts: decide the rest of a flow without asking, until they expire. */
export class FlowVerdicts<O extends FlowOwner> {
  private readonly table = new Map<string, FlowVerdict<O>>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.table.size;
  }

  /** Stores a verdict; true when the oldest one had to go to make room. */
  set(key: string, action: OutcomeAction, expiresAtMs: number, owner: O): boolean {
    // Re-inserting moves the flow to the young end.
    this.table.delete(key);
    let evicted = false;
    if (this.table.size >= this.capacity) {
      const oldest = this.table.keys().next();
      if (!oldest.done) evicted = this.table.delete(oldest.value);
    }
    this.table.set(key, { action, expiresAtMs, owner });
    return evicted;
  }

  /** The live verdict for a flow; expired ones (and those of ended owners) are dropped. */
  lookup(key: string, nowMs: number): OutcomeAction | null {
    if (this.table.size === 0) return null;
    const v = this.table.get(key);
    if (v === undefined) return null;
    if (v.expiresAtMs <= nowMs || v.owner.closed) {
      this.table.delete(key);
      return null;
    }
    return v.action;
  }

  /** Live verdicts per owner (for `icmpfwd top`; a scan of the table). */
  countByOwner(nowMs: number): Map<O, number> {
    const out = new Map<O, number>();
    for (const v of this.table.values())
      if (v.expiresAtMs > nowMs) out.set(v.owner, (out.get(v.owner) ?? 0) + 1);
    return out;
  }

  /** Drops every verdict an owner gave (its session ended). */
  clearOwner(owner: O): void {
    for (const [k, v] of this.table) if (v.owner === owner) this.table.delete(k);
  }
}

/** Flow affinity: the session a flow went to, while that session lives. */
export class FlowAffinity<O extends FlowOwner> {
  private readonly table = new Map<string, O>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.table.size;
  }

  /** The live session of a flow, or null. */
  get(key: string): O | null {
    const o = this.table.get(key);
    if (o === undefined) return null;
    if (o.closed) {
      this.table.delete(key);
      return null;
    }
    return o;
  }

  set(key: string, owner: O): void {
    if (this.table.size >= this.capacity && !this.table.has(key)) {
      const oldest = this.table.keys().next();
      if (!oldest.done) this.table.delete(oldest.value);
    }
    this.table.set(key, owner);
  }

  clearOwner(owner: O): void {
    for (const [k, o] of this.table) if (o === owner) this.table.delete(k);
  }

  /** Flows pinned per live owner (for `icmpfwd top`; a scan of the table). */
  countByOwner(): Map<O, number> {
    const out = new Map<O, number>();
    for (const o of this.table.values()) if (!o.closed) out.set(o, (out.get(o) ?? 0) + 1);
    return out;
  }
}
