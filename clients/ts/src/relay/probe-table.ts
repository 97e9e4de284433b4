/**
 * The probes in flight of one family, by the sequence number the relay gave each: bounded in
 * size (a full table refuses a probe rather than reusing a live number) and in age (an entry
 * older than the budget is dropped when the next one is added, whether or not its timer ran).
 */
export class ProbeTable<T> {
  private readonly entries = new Map<number, { value: T; at: number }>();
  private next = 0;

  constructor(
    readonly capacity: number,
    readonly maxAgeMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Files `value` under a free sequence number (1..65535, in turn); null when full. */
  add(value: T): number | null {
    this.expire();
    if (this.entries.size >= Math.min(this.capacity, 0xffff)) return null;
    do this.next = (this.next % 0xffff) + 1;
    while (this.entries.has(this.next));
    this.entries.set(this.next, { value, at: this.now() });
    return this.next;
  }

  /** Removes and returns the probe filed under `sequence`. */
  take(sequence: number): T | undefined {
    const e = this.entries.get(sequence);
    if (e === undefined) return undefined;
    this.entries.delete(sequence);
    return e.value;
  }

  /** Drops the entries older than maxAgeMs (oldest first: a Map keeps insertion order). */
  private expire(): void {
    const cutoff = this.now() - this.maxAgeMs;
    for (const [sequence, e] of this.entries) {
      if (e.at > cutoff) break;
      this.entries.delete(sequence);
    }
  }
}
