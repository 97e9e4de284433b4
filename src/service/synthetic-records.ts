/**
 * What the dispatcher keeps of consumed requests so a proxy can answer them later
 * (proxy-owned replies): the fields and ICMP bytes of each request consumed by a verdict (taken
 * while the request is live), for the synthetic-reply window. Bounded by count and by bytes;
 * past either bound the oldest copies go first (counted by the dispatcher). Insertion order is
 * expiry order (one window for all), so expired copies leave from the front.
 *
 * Every consumed request lands here and most live for the whole window, so the copies are kept
 * in slots of preallocated typed arrays, not one object graph per request: tens of thousands of
 * long-lived small objects made every garbage collection copy and mark them (issue #7).
 */
import type { EchoRequestCopy } from "../netstack/icmp/synthetic.js";
import type { RequestTrace } from "./request-telemetry.js";

export interface SyntheticRecord {
  readonly session: number;
  readonly copy: EchoRequestCopy;
  readonly expiresAtMs: number;
}

/** A sampled request's trace, kept with its copy for the span of its synthetic answer. */
export interface HeldTrace {
  readonly trace: RequestTrace;
  readonly consumedAtMs: number;
}

export interface SyntheticLimits {
  /** How long after its CONSUME verdict a request may get a synthetic reply (0: never). */
  windowMs: number;
  /** Most copies held at once. */
  maxRecords: number;
  /** Most bytes of ICMP messages held at once. */
  maxBytes: number;
}

/**
 * One slot: a 64-byte head — id (f64 0), expiry (f64 1), session (i32 4), NIC (i32 5), held
 * length (i32 6), TOS (byte 28), flags (byte 29), IP header length (bytes 30–31), source
 * (bytes 32–47), destination (48–63) — then the request's IP header and ICMP message inline
 * when they fit (an ICMP error quotes the header). One slot is one contiguous run of memory: a
 * record spread over a dozen arrays cost a cache miss per array on every add (issue #7).
 */
const SLOT_BYTES = 192;
const HEAD_BYTES = 64;
/** Header and message up to this size live in their slot; longer ones get a copy of their own. */
const INLINE_BYTES = SLOT_BYTES - HEAD_BYTES;
const F64_PER_SLOT = SLOT_BYTES / 8;
const I32_PER_SLOT = SLOT_BYTES / 4;
const TOS = 28;
const FLAGS = 29;
const HEADER_LENGTH = 30;
const SOURCE = 32;
const DESTINATION = 48;
const FLAG_V6 = 1;
const FLAG_BROADCAST = 2;
/**
 * Slots allocated at start (fewer when maxRecords is lower); past them the slab doubles up to
 * maxRecords. The slab's pages are committed only as slots are first used, so allocating the
 * default 65,536 slots (12 MB) at once costs no memory up front, and no request pays for a copy
 * of the whole slab when it grows (an 11 ms stall at 10k requests/s, issue #7).
 */
const PREALLOCATED_SLOTS = 65536;

export class SyntheticRecords {
  /** Request id → slot. */
  private readonly slots: IdIndex;
  // Ids and their slots in insertion (= expiry) order; an entry whose slot holds another id
  // (or none) was deleted. A Map's "first key" would walk every deleted slot before it: O(n)
  // per eviction once the store is full, so the order lives in this queue instead.
  private readonly order: OrderQueue;
  private heldBytes = 0;
  // A slot is free again once its record is deleted (its id is then 0).
  private capacity = 0;
  private free: number[] = [];
  private f64 = new Float64Array(0);
  private i32 = new Int32Array(0);
  private bytes8 = new Uint8Array(0);
  private readonly outOfLine = new Map<number, Uint8Array>();
  /** By slot: the sampled requests' traces (few: 1 % by default); null for the rest. */
  private traces: (RequestTrace | null)[] = [];

  constructor(readonly limits: SyntheticLimits) {
    const slots = Math.max(1, Math.min(limits.maxRecords, PREALLOCATED_SLOTS));
    this.slots = new IdIndex(slots);
    this.order = new OrderQueue(slots);
    this.growTo(slots);
  }

  get size(): number {
    return this.slots.size;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * Keeps a copy of request `id` (not held yet; `copy` may hold views into the live packet:
   * its bytes are copied here), and a sampled request's trace; returns how many older copies
   * were evicted (before their window ended) to stay within the bounds.
   */
  add(
    id: number,
    session: number,
    copy: EchoRequestCopy,
    nowMs: number,
    trace: RequestTrace | null = null,
  ): number {
    this.expire(nowMs);
    let evicted = 0;
    const headerLength = copy.networkHeader.length;
    const size = headerLength + copy.icmp.length;
    while (
      this.slots.size > 0 &&
      (this.slots.size >= this.limits.maxRecords || this.heldBytes + size > this.limits.maxBytes)
    ) {
      this.deleteOldest();
      evicted++;
    }
    if (size > this.limits.maxBytes || this.limits.maxRecords < 1) return evicted;
    const slot = this.allocate();
    const f = slot * F64_PER_SLOT;
    const w = slot * I32_PER_SLOT;
    const b = slot * SLOT_BYTES;
    this.f64[f] = id;
    this.f64[f + 1] = nowMs + this.limits.windowMs;
    this.i32[w + 4] = session;
    this.i32[w + 5] = copy.nicId;
    this.i32[w + 6] = size;
    const bytes = this.bytes8;
    bytes[b + TOS] = copy.tos;
    bytes[b + HEADER_LENGTH] = headerLength >>> 8;
    bytes[b + HEADER_LENGTH + 1] = headerLength & 0xff;
    bytes[b + FLAGS] =
      (copy.family === "ipv6" ? FLAG_V6 : 0) | (copy.localAddressBroadcast ? FLAG_BROADCAST : 0);
    // Byte loops for the addresses: TypedArray.set costs more than copying 4 or 16 bytes.
    copyInto(bytes, b + SOURCE, copy.source);
    copyInto(bytes, b + DESTINATION, copy.destination);
    if (size <= INLINE_BYTES) {
      bytes.set(copy.networkHeader, b + HEAD_BYTES);
      bytes.set(copy.icmp, b + HEAD_BYTES + headerLength);
    } else {
      const held = new Uint8Array(size);
      held.set(copy.networkHeader, 0);
      held.set(copy.icmp, headerLength);
      this.outOfLine.set(slot, held);
    }
    if (trace !== null) this.traces[slot] = trace;
    this.slots.set(id, slot);
    this.order.push(id, slot);
    this.heldBytes += size;
    return evicted;
  }

  /** The record of `id` (null when absent or expired), as fresh copies; it stays until delete(). */
  get(id: number, nowMs: number): SyntheticRecord | null {
    this.expire(nowMs);
    const slot = this.slots.get(id);
    if (slot < 0) return null;
    const b = slot * SLOT_BYTES;
    const w = slot * I32_PER_SLOT;
    const flags = this.bytes8[b + FLAGS];
    const addressLength = (flags & FLAG_V6) !== 0 ? 16 : 4;
    const length = this.i32[w + 6];
    const headerLength = (this.bytes8[b + HEADER_LENGTH] << 8) | this.bytes8[b + HEADER_LENGTH + 1];
    const held =
      length <= INLINE_BYTES
        ? this.bytes8.slice(b + HEAD_BYTES, b + HEAD_BYTES + length)
        : (this.outOfLine.get(slot) as Uint8Array).slice();
    return {
      session: this.i32[w + 4],
      expiresAtMs: this.f64[slot * F64_PER_SLOT + 1],
      copy: {
        nicId: this.i32[w + 5],
        family: (flags & FLAG_V6) !== 0 ? "ipv6" : "ipv4",
        source: this.bytes8.slice(b + SOURCE, b + SOURCE + addressLength),
        destination: this.bytes8.slice(b + DESTINATION, b + DESTINATION + addressLength),
        tos: this.bytes8[b + TOS],
        networkHeader: held.subarray(0, headerLength),
        icmp: held.subarray(headerLength),
        localAddressBroadcast: (flags & FLAG_BROADCAST) !== 0,
      },
    };
  }

  /** The trace kept with the record of `id` (null when unsampled, absent or expired). */
  trace(id: number, nowMs: number): HeldTrace | null {
    this.expire(nowMs);
    const slot = this.slots.get(id);
    const trace = slot < 0 ? null : (this.traces[slot] ?? null);
    if (trace === null) return null;
    return { trace, consumedAtMs: this.f64[slot * F64_PER_SLOT + 1] - this.limits.windowMs };
  }

  /** Removes the record of `id` (a synthetic reply was sent: once). */
  delete(id: number): void {
    const slot = this.slots.get(id);
    if (slot >= 0) this.release(id, slot);
  }

  /** Drops the copies whose window has ended. */
  expire(nowMs: number): void {
    const q = this.order;
    while (q.length > 0) {
      const id = q.frontId();
      const slot = q.frontSlot();
      const f = slot * F64_PER_SLOT;
      const held = this.f64[f] === id;
      if (held && this.f64[f + 1] > nowMs) break;
      q.shift();
      if (held) this.release(id, slot);
    }
  }

  /** Removes the oldest record still held (ids already taken are skipped). */
  private deleteOldest(): void {
    const q = this.order;
    while (q.length > 0) {
      const id = q.frontId();
      const slot = q.frontSlot();
      q.shift();
      if (this.f64[slot * F64_PER_SLOT] === id) {
        this.release(id, slot);
        break;
      }
    }
  }

  private release(id: number, slot: number): void {
    this.slots.delete(id);
    this.f64[slot * F64_PER_SLOT] = 0;
    const length = this.i32[slot * I32_PER_SLOT + 6];
    this.heldBytes -= length;
    if (length > INLINE_BYTES) this.outOfLine.delete(slot);
    if (this.traces[slot] != null) this.traces[slot] = null;
    this.free.push(slot);
  }

  /** A free slot; the slab grows (doubling, at most to maxRecords) when none is left. */
  private allocate(): number {
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    // No free slot: every slot handed out so far is held, so the next unused one is `size`.
    if (this.slots.size >= this.capacity) {
      this.growTo(
        Math.max(this.slots.size + 1, Math.min(this.limits.maxRecords, this.capacity * 2)),
      );
    }
    return this.slots.size;
  }

  private growTo(n: number): void {
    const slab = new ArrayBuffer(n * SLOT_BYTES);
    const bytes = new Uint8Array(slab);
    bytes.set(this.bytes8);
    this.bytes8 = bytes;
    this.f64 = new Float64Array(slab);
    this.i32 = new Int32Array(slab);
    // Holes until a sampled request takes the slot; filled with null so reads see no holes.
    for (let i = this.traces.length; i < n; i++) this.traces.push(null);
    this.capacity = n;
  }
}

function copyInto(to: Uint8Array, at: number, from: Uint8Array): void {
  for (let i = 0; i < from.length; i++) to[at + i] = from[i];
}

/**
 * Request id (a positive integer) → slot: Robin Hood hashing on the id itself, keys and values
 * side by side in one array. Ids come nearly in order, so almost every entry sits in its home
 * bucket: an insert, a lookup and a deletion (backward shift, which stops at the first entry
 * at home) each touch one or two neighbouring buckets. A Map with this much insert/delete
 * churn rehashed itself over and over (issue #7).
 */
class IdIndex {
  /** [id, value] per bucket; id 0: empty. */
  private table: Float64Array;
  private mask: number;
  private count = 0;

  /** Sized so that `entries` fit at most half full: no resize on the way there. */
  constructor(entries: number) {
    let buckets = 1024;
    while (buckets < 2 * entries) buckets *= 2;
    this.table = new Float64Array(2 * buckets);
    this.mask = buckets - 1;
  }

  get size(): number {
    return this.count;
  }

  /** How far bucket `i` (occupied) is from its entry's home. */
  private distance(i: number): number {
    return (i - (this.table[2 * i] & this.mask)) & this.mask;
  }

  /** The slot of `id`, or -1. */
  get(id: number): number {
    if (!(id > 0)) return -1;
    const t = this.table;
    const m = this.mask;
    for (let i = id & m, d = 0; ; i = (i + 1) & m, d++) {
      const k = t[2 * i];
      if (k === id) return t[2 * i + 1];
      // Robin Hood order: past an entry nearer its home than we are, `id` cannot be.
      if (k === 0 || this.distance(i) < d) return -1;
    }
  }

  /** Adds `id` (not present yet). */
  set(id: number, value: number): void {
    if ((this.count + 1) * 2 > this.mask + 1) this.resize(2 * (this.mask + 1));
    const t = this.table;
    const m = this.mask;
    let key = id;
    let v = value;
    for (let i = key & m, d = 0; ; i = (i + 1) & m, d++) {
      const k = t[2 * i];
      if (k === 0) {
        t[2 * i] = key;
        t[2 * i + 1] = v;
        break;
      }
      const dk = this.distance(i);
      if (dk < d) {
        // Take the bucket from the richer entry and carry it on.
        t[2 * i] = key;
        const carried = t[2 * i + 1];
        t[2 * i + 1] = v;
        key = k;
        v = carried;
        d = dk;
      }
    }
    this.count++;
  }

  delete(id: number): void {
    if (!(id > 0)) return;
    const t = this.table;
    const m = this.mask;
    let i = id & m;
    for (let d = 0; ; i = (i + 1) & m, d++) {
      const k = t[2 * i];
      if (k === id) break;
      if (k === 0 || this.distance(i) < d) return;
    }
    // Backward shift: the entries after it move one bucket nearer home, up to one at home.
    for (let j = (i + 1) & m; t[2 * j] !== 0 && this.distance(j) > 0; j = (j + 1) & m) {
      t[2 * i] = t[2 * j];
      t[2 * i + 1] = t[2 * j + 1];
      i = j;
    }
    t[2 * i] = 0;
    this.count--;
  }

  private resize(buckets: number): void {
    const old = this.table;
    this.table = new Float64Array(2 * buckets);
    this.mask = buckets - 1;
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0) this.set(old[i], old[i + 1]);
  }
}

/**
 * A FIFO of (id, slot) pairs in two typed rings: push at the back, shift from the front, no
 * per-entry allocation and no array copies (a JS array sliced to drop its front kept large
 * arrays churning through the old generation). Doubles when full.
 */
class OrderQueue {
  private ids: Float64Array;
  private slots: Int32Array;
  private mask: number;
  private head = 0;
  length = 0;

  constructor(entries: number) {
    let n = 1024;
    while (n < entries) n *= 2;
    this.ids = new Float64Array(n);
    this.slots = new Int32Array(n);
    this.mask = n - 1;
  }

  push(id: number, slot: number): void {
    if (this.length > this.mask) this.grow();
    const i = (this.head + this.length) & this.mask;
    this.ids[i] = id;
    this.slots[i] = slot;
    this.length++;
  }

  frontId(): number {
    return this.ids[this.head];
  }

  frontSlot(): number {
    return this.slots[this.head];
  }

  shift(): void {
    this.head = (this.head + 1) & this.mask;
    this.length--;
  }

  private grow(): void {
    const n = 2 * (this.mask + 1);
    const ids = new Float64Array(n);
    const slots = new Int32Array(n);
    for (let k = 0; k < this.length; k++) {
      const i = (this.head + k) & this.mask;
      ids[k] = this.ids[i];
      slots[k] = this.slots[i];
    }
    this.ids = ids;
    this.slots = slots;
    this.mask = n - 1;
    this.head = 0;
  }
}
