/**
 * One deadline structure for every pending request: an indexed binary min-heap ordered by
 * deadline, and one timer armed for the earliest. Entries remember their heap position, so a
 * request decided before its deadline leaves the heap at once (nothing stale stays behind), and
 * an empty heap holds no timer.
 */

/** Time and timers, injectable so tests can drive the dispatcher with a manual clock. */
export interface Scheduler {
  /** Monotonic milliseconds. */
  nowMs(): number;
  setTimer(fn: () => void, delayMs: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemScheduler: Scheduler = {
  nowMs: () => performance.now(),
  setTimer: (fn, delayMs) => setTimeout(fn, delayMs),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** What the heap orders: an entry owns its deadline and its slot in the heap (-1 when out). */
export interface DeadlineEntry {
  readonly deadlineMs: number;
  heapIndex: number;
}

export class Deadlines<T extends DeadlineEntry> {
  private readonly heap: T[] = [];
  private timer: unknown = null;
  /** When the armed timer fires (its target deadline). */
  private timerAtMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly scheduler: Scheduler,
    /** Called for each entry whose deadline passed, earliest first, after it left the heap. */
    private readonly onExpired: (entry: T) => void,
  ) {}

  get size(): number {
    return this.heap.length;
  }

  /** Whether a timer is armed (false whenever the heap is empty). */
  get armed(): boolean {
    return this.timer !== null;
  }

  add(entry: T): void {
    entry.heapIndex = this.heap.length;
    this.heap.push(entry);
    this.up(entry.heapIndex);
    if (entry.deadlineMs < this.timerAtMs) this.arm();
  }

  /** Takes an entry out; a no-op for one that is not in the heap. */
  remove(entry: T): void {
    const i = entry.heapIndex;
    if (i < 0 || this.heap[i] !== entry) return;
    const last = this.heap.pop() as T;
    entry.heapIndex = -1;
    if (i < this.heap.length) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.down(i);
      this.up(last.heapIndex);
    }
    // An early timer is harmless (it re-arms); only an empty heap must not keep one.
    if (this.heap.length === 0) this.disarm();
  }

  /** Expires every entry whose deadline is at or before now. */
  expireDue(): void {
    const now = this.scheduler.nowMs();
    while (this.heap.length > 0 && this.heap[0].deadlineMs <= now) {
      const top = this.heap[0];
      this.remove(top);
      this.onExpired(top);
    }
  }

  private arm(): void {
    this.disarm();
    if (this.heap.length === 0) return;
    const at = this.heap[0].deadlineMs;
    this.timerAtMs = at;
    const delay = Math.max(0, Math.ceil(at - this.scheduler.nowMs()));
    this.timer = this.scheduler.setTimer(this.fire, delay);
  }

  private disarm(): void {
    if (this.timer !== null) this.scheduler.clearTimer(this.timer);
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
  }

  private readonly fire = (): void => {
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    this.expireDue();
    if (this.heap.length > 0 && this.timer === null) this.arm();
  };

  private up(i: number): void {
    const h = this.heap;
    const e = h[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].deadlineMs <= e.deadlineMs) break;
      h[i] = h[p];
      h[i].heapIndex = i;
      i = p;
    }
    h[i] = e;
    e.heapIndex = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = h.length;
    const e = h[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r].deadlineMs < h[l].deadlineMs ? r : l;
      if (h[c].deadlineMs >= e.deadlineMs) break;
      h[i] = h[c];
      h[i].heapIndex = i;
      i = c;
    }
    h[i] = e;
    e.heapIndex = i;
  }
}
