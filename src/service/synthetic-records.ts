/**
 * What the dispatcher keeps of consumed requests so a proxy can answer them later (DESIGN.md §4,
 * proxy-owned replies): the fields and ICMP bytes of each request consumed by a verdict (taken
 * while the request is live), for the synthetic-reply window. Bounded by count and by bytes;
 * past either bound the oldest copies go first (counted by the dispatcher). Insertion order is
 * expiry order (one window for all), so expired copies leave from the front.
 *
 * Every consumed request lands here and most live for the whole window, so the copies are kept
 * in slots of preallocated typed arrays, not one object graph per request: tens of thousands of
 * long-lived small objects made every garbage collection copy and mark them (issue #7).
 */
import type { EchoRequestCopy } from "../netstack/icmp/synthetic.js";

export interface SyntheticRecord {
  readonly session: number;
  readonly copy: EchoRequestCopy;
  readonly expiresAtMs: number;
}

export interface SyntheticLimits {
  /** How long after its CONSUME verdict a request may get a synthetic reply (0: never). */
  windowMs: number;
  /** Most copies held at once. */
  maxRecords: number;
  /** Most bytes of ICMP messages held at once. */
  maxBytes: number;
}

/** ICMP messages up to this size live in their slot's inline bytes; longer ones get their own copy. */
const INLINE_BYTES = 128;
/** Address bytes per slot: source then destination, 16 bytes each (IPv4 uses the first 4). */
const ADDRESS_BYTES = 32;
const FLAG_V6 = 1;
const FLAG_BROADCAST = 2;
/** Slots allocated at first; the arrays double up to maxRecords. */
const INITIAL_SLOTS = 1024;

export class SyntheticRecords {
  /** Request id → slot. */
  private readonly slots = new IdIndex();
  // Ids and their slots in insertion (= expiry) order; an entry whose slot holds another id
  // (or none) was deleted. A Map's "first key" would walk every deleted slot before it: O(n)
  // per eviction once the store is full, so the order lives in this queue instead.
  private order: number[] = [];
  private orderSlots: number[] = [];
  private head = 0;
  private heldBytes = 0;
  // Per slot; a slot is free again once its record is deleted.
  private capacity = 0;
  private free: number[] = [];
  /** The id each slot holds (0: free). */
  private ids = new Float64Array(0);
  private sessions = new Int32Array(0);
  private expires = new Float64Array(0);
  private nics = new Int32Array(0);
  private tos = new Uint8Array(0);
  private flags = new Uint8Array(0);
  private lengths = new Int32Array(0);
  private addresses = new Uint8Array(0);
  private inline = new Uint8Array(0);
  private readonly outOfLine = new Map<number, Uint8Array>();

  constructor(readonly limits: SyntheticLimits) {}

  get size(): number {
    return this.slots.size;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * Keeps a copy of request `id` (`copy` may hold views into the live packet: its bytes are
   * copied here); returns how many older copies were evicted (before their window ended) to
   * stay within the bounds.
   */
  add(id: number, session: number, copy: EchoRequestCopy, nowMs: number): number {
    this.expire(nowMs);
    let evicted = 0;
    const size = copy.icmp.length;
    while (
      this.slots.size > 0 &&
      (this.slots.size >= this.limits.maxRecords || this.heldBytes + size > this.limits.maxBytes)
    ) {
      this.deleteOldest();
      evicted++;
    }
    if (size > this.limits.maxBytes || this.limits.maxRecords < 1) return evicted;
    const slot = this.allocate();
    this.ids[slot] = id;
    this.sessions[slot] = session;
    this.expires[slot] = nowMs + this.limits.windowMs;
    this.nics[slot] = copy.nicId;
    this.tos[slot] = copy.tos;
    this.flags[slot] =
      (copy.family === "ipv6" ? FLAG_V6 : 0) | (copy.localAddressBroadcast ? FLAG_BROADCAST : 0);
    this.lengths[slot] = size;
    // Byte loops: TypedArray.set costs more than the copy itself for a few dozen bytes.
    const a = slot * ADDRESS_BYTES;
    copyInto(this.addresses, a, copy.source);
    copyInto(this.addresses, a + ADDRESS_BYTES / 2, copy.destination);
    if (size <= INLINE_BYTES) copyInto(this.inline, slot * INLINE_BYTES, copy.icmp);
    else this.outOfLine.set(slot, copy.icmp.slice());
    this.slots.set(id, slot);
    this.order.push(id);
    this.orderSlots.push(slot);
    this.heldBytes += size;
    return evicted;
  }

  /** The record of `id` (null when absent or expired), as fresh copies; it stays until delete(). */
  get(id: number, nowMs: number): SyntheticRecord | null {
    this.expire(nowMs);
    const slot = this.slots.get(id);
    if (slot < 0) return null;
    const v6 = (this.flags[slot] & FLAG_V6) !== 0;
    const a = slot * ADDRESS_BYTES;
    const addressLength = v6 ? 16 : 4;
    const length = this.lengths[slot];
    const icmp =
      length <= INLINE_BYTES
        ? this.inline.slice(slot * INLINE_BYTES, slot * INLINE_BYTES + length)
        : (this.outOfLine.get(slot) as Uint8Array).slice();
    return {
      session: this.sessions[slot],
      expiresAtMs: this.expires[slot],
      copy: {
        nicId: this.nics[slot],
        family: v6 ? "ipv6" : "ipv4",
        source: this.addresses.slice(a, a + addressLength),
        destination: this.addresses.slice(a + 16, a + 16 + addressLength),
        tos: this.tos[slot],
        icmp,
        localAddressBroadcast: (this.flags[slot] & FLAG_BROADCAST) !== 0,
      },
    };
  }

  /** Removes the record of `id` (a synthetic reply was sent: once). */
  delete(id: number): void {
    const slot = this.slots.get(id);
    if (slot >= 0) this.release(id, slot);
  }

  /** Drops the copies whose window has ended. */
  expire(nowMs: number): void {
    while (this.head < this.order.length) {
      const id = this.order[this.head];
      const slot = this.orderSlots[this.head];
      const held = this.ids[slot] === id;
      if (held && this.expires[slot] > nowMs) break;
      this.head++;
      if (held) this.release(id, slot);
    }
    this.compact();
  }

  /** Removes the oldest record still held (ids already taken are skipped). */
  private deleteOldest(): void {
    while (this.head < this.order.length) {
      const id = this.order[this.head];
      const slot = this.orderSlots[this.head++];
      if (this.ids[slot] === id) {
        this.release(id, slot);
        break;
      }
    }
    this.compact();
  }

  private release(id: number, slot: number): void {
    this.slots.delete(id);
    this.ids[slot] = 0;
    this.heldBytes -= this.lengths[slot];
    if (this.lengths[slot] > INLINE_BYTES) this.outOfLine.delete(slot);
    this.free.push(slot);
  }

  /** Drops the consumed front of the queue once it is most of it. */
  private compact(): void {
    if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.orderSlots = this.orderSlots.slice(this.head);
      this.head = 0;
    }
  }

  /** A free slot; the arrays grow (doubling, at most to maxRecords) when none is left. */
  private allocate(): number {
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    // No free slot: every slot handed out so far is held, so the next unused one is `size`.
    if (this.slots.size >= this.capacity) this.grow();
    return this.slots.size;
  }

  private grow(): void {
    const n = Math.max(
      this.slots.size + 1,
      Math.min(this.limits.maxRecords, Math.max(INITIAL_SLOTS, this.capacity * 2)),
    );
    const widen = <A extends Int32Array | Float64Array | Uint8Array>(old: A, wider: A): A => {
      wider.set(old);
      return wider;
    };
    this.ids = widen(this.ids, new Float64Array(n));
    this.sessions = widen(this.sessions, new Int32Array(n));
    this.expires = widen(this.expires, new Float64Array(n));
    this.nics = widen(this.nics, new Int32Array(n));
    this.tos = widen(this.tos, new Uint8Array(n));
    this.flags = widen(this.flags, new Uint8Array(n));
    this.lengths = widen(this.lengths, new Int32Array(n));
    this.addresses = widen(this.addresses, new Uint8Array(n * ADDRESS_BYTES));
    this.inline = widen(this.inline, new Uint8Array(n * INLINE_BYTES));
    this.capacity = n;
  }
}

function copyInto(to: Uint8Array, at: number, from: Uint8Array): void {
  for (let i = 0; i < from.length; i++) to[at + i] = from[i];
}

/**
 * Request id (a positive integer) → slot: open addressing with linear probing in typed arrays.
 * A Map with this much insert/delete churn rehashed itself over and over (issue #7).
 */
class IdIndex {
  private keys = new Float64Array(1024);
  private values = new Int32Array(1024);
  private mask = 1023;
  private shift = 22;
  private count = 0;

  /**
   * Fibonacci hashing: the held ids are mostly one contiguous range, which `id & mask` would
   * lay out as one long probe run (and a deletion walks the whole run).
   */
  private home(id: number): number {
    return Math.imul(id, 0x9e3779b1) >>> this.shift;
  }

  get size(): number {
    return this.count;
  }

  /** The slot of `id`, or -1. */
  get(id: number): number {
    if (!(id > 0)) return -1;
    for (let i = this.home(id); ; i = (i + 1) & this.mask) {
      const k = this.keys[i];
      if (k === id) return this.values[i];
      if (k === 0) return -1;
    }
  }

  /** Adds `id` (not present yet). */
  set(id: number, value: number): void {
    if ((this.count + 1) * 2 > this.keys.length) this.resize(this.keys.length * 2);
    let i = this.home(id);
    while (this.keys[i] !== 0) i = (i + 1) & this.mask;
    this.keys[i] = id;
    this.values[i] = value;
    this.count++;
  }

  delete(id: number): void {
    if (!(id > 0)) return;
    const m = this.mask;
    let i = this.home(id);
    for (;;) {
      const k = this.keys[i];
      if (k === 0) return;
      if (k === id) break;
      i = (i + 1) & m;
    }
    // Backward-shift deletion: later entries of the probe run move up, so no tombstones.
    for (let j = (i + 1) & m; this.keys[j] !== 0; j = (j + 1) & m) {
      const home = this.home(this.keys[j]);
      // Move entry j into the hole at i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        this.keys[i] = this.keys[j];
        this.values[i] = this.values[j];
        i = j;
      }
    }
    this.keys[i] = 0;
    this.count--;
  }

  private resize(n: number): void {
    const keys = this.keys;
    const values = this.values;
    this.keys = new Float64Array(n);
    this.values = new Int32Array(n);
    this.mask = n - 1;
    this.shift = 32 - Math.log2(n);
    this.count = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) this.set(keys[i], values[i]);
  }
}
