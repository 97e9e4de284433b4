/**
 * What the dispatcher keeps of consumed requests so a proxy can answer them later (DESIGN.md §4,
 * proxy-owned replies): a copy of each request consumed by a verdict (copyEchoRequest, taken
 * while the request is live), for the synthetic-reply window. Bounded by count and by bytes;
 * past either bound the oldest copies go first (counted by the dispatcher). Insertion order is
 * expiry order (one window for all), so expired copies leave from the front.
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

export class SyntheticRecords {
  private readonly records = new Map<number, SyntheticRecord>();
  // Ids in insertion (= expiry) order. A Map's "first key" would walk every deleted slot before
  // it: O(n) per eviction once the store is full, so the order lives in this queue instead.
  private order: number[] = [];
  private head = 0;
  private heldBytes = 0;

  constructor(readonly limits: SyntheticLimits) {}

  get size(): number {
    return this.records.size;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * Keeps the copy of request `id`; returns how many older copies were evicted (before their
   * window ended) to stay within the bounds.
   */
  add(id: number, session: number, copy: EchoRequestCopy, nowMs: number): number {
    this.expire(nowMs);
    let evicted = 0;
    const size = copy.icmp.length;
    while (
      this.records.size > 0 &&
      (this.records.size >= this.limits.maxRecords || this.heldBytes + size > this.limits.maxBytes)
    ) {
      this.deleteOldest();
      evicted++;
    }
    if (size > this.limits.maxBytes) return evicted;
    this.records.set(id, { session, copy, expiresAtMs: nowMs + this.limits.windowMs });
    this.order.push(id);
    this.heldBytes += size;
    return evicted;
  }

  /** The record of `id` (null when absent or expired); it stays until take(). */
  get(id: number, nowMs: number): SyntheticRecord | null {
    this.expire(nowMs);
    return this.records.get(id) ?? null;
  }

  /** Removes the record of `id` (a synthetic reply was sent: once). */
  delete(id: number): void {
    const r = this.records.get(id);
    if (r === undefined) return;
    this.records.delete(id);
    this.heldBytes -= r.copy.icmp.length;
  }

  /** Drops the copies whose window has ended. */
  expire(nowMs: number): void {
    while (this.head < this.order.length) {
      const id = this.order[this.head];
      const r = this.records.get(id);
      if (r !== undefined && r.expiresAtMs > nowMs) break;
      this.head++;
      if (r !== undefined) this.delete(id);
    }
    this.compact();
  }

  /** Removes the oldest record still held (ids already taken are skipped). */
  private deleteOldest(): void {
    while (this.head < this.order.length) {
      const id = this.order[this.head++];
      if (this.records.has(id)) {
        this.delete(id);
        break;
      }
    }
    this.compact();
  }

  /** Drops the consumed front of the queue once it is most of it. */
  private compact(): void {
    if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
