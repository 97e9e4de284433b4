/**
 * The pending requests by id. Ids are issued in order, so a ring indexed by the id's low bits
 * finds almost every live one in its place; the rare id whose place is still taken (an older
 * request pending 65,536 ids later) goes to a Map. A Map for all of them churned its hash table
 * on every request, and each table it outgrew was left in the old generation still pointing at
 * young requests, which then survived collections they should not have (issue #7).
 */
export class PendingTable<T extends { readonly id: number }> {
  private readonly ring: (T | undefined)[];
  private readonly mask: number;
  private readonly overflow = new Map<number, T>();
  private count = 0;

  /** `capacity`: about how many may be pending at once (the ring is at most 65,536). */
  constructor(capacity: number) {
    let n = 1024;
    while (n < capacity && n < 65536) n *= 2;
    this.ring = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The pending request `id` (any number: NaN or a fraction finds nothing). */
  get(id: number): T | undefined {
    const p = this.ring[id & this.mask];
    if (p !== undefined && p.id === id) return p;
    return this.overflow.size === 0 ? undefined : this.overflow.get(id);
  }

  /** Adds a request not pending yet. */
  add(p: T): void {
    const i = p.id & this.mask;
    if (this.ring[i] === undefined) this.ring[i] = p;
    else this.overflow.set(p.id, p);
    this.count++;
  }

  /** Removes a pending request. */
  delete(p: T): void {
    const i = p.id & this.mask;
    if (this.ring[i] === p) this.ring[i] = undefined;
    else if (!this.overflow.delete(p.id)) return;
    this.count--;
  }
}
