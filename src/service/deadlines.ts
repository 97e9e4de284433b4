/**
 * One deadline structure for every pending request: a queue ordered by deadline, and one timer
 * armed for the earliest. Every request gets the same deadline after its receive time, so
 * entries arrive in order and the queue needs no heap (whose sift-downs chased pointers on every
 * decision, issue #7). Entries remember their position, so a request decided before its
 * deadline leaves at once (no reference stays behind), and an empty queue holds no timer.
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

/** What the queue orders: an entry owns its deadline and its slot in the queue (-1 when out). */
export interface DeadlineEntry {
  readonly deadlineMs: number;
  queueIndex: number;
}

export class Deadlines<T extends DeadlineEntry> {
  /**
   * Entries by deadline in [head, tail); a removed one leaves null (the ends are always live).
   * A fixed array that is compacted in place and grown by hand, never by push(): an outgrown
   * backing store would be left in the old generation still pointing at young requests, which
   * then survive scavenges (issue #7). A replaced array is cleared first for the same reason.
   */
  private queue: (T | null)[] = new Array<T | null>(1024).fill(null);
  private head = 0;
  private tail = 0;
  private live = 0;
  private timer: unknown = null;
  /** When the armed timer fires (its target deadline). */
  private timerAtMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly scheduler: Scheduler,
    /** Called for each entry whose deadline passed, earliest first, after it left the queue. */
    private readonly onExpired: (entry: T) => void,
  ) {}

  get size(): number {
    return this.live;
  }

  /** Whether a timer is armed (false whenever the queue is empty). */
  get armed(): boolean {
    return this.timer !== null;
  }

  add(entry: T): void {
    if (this.tail === this.queue.length) this.makeRoom();
    const q = this.queue;
    let i = this.tail;
    // One deadline for every request on a monotonic clock: entries come in deadline order and
    // are appended. An earlier one (another clock) is inserted in place.
    while (i > this.head && (q[i - 1] as T).deadlineMs > entry.deadlineMs) {
      i--;
      while (i > this.head && q[i - 1] === null) i--;
    }
    for (let j = this.tail; j > i; j--) {
      const moved = q[j - 1];
      q[j] = moved;
      if (moved !== null) moved.queueIndex = j;
    }
    q[i] = entry;
    entry.queueIndex = i;
    this.tail++;
    this.live++;
    if (entry.deadlineMs < this.timerAtMs) this.arm();
  }

  /** Takes an entry out; a no-op for one that is not in the queue. */
  remove(entry: T): void {
    const i = entry.queueIndex;
    const q = this.queue;
    if (i < 0 || q[i] !== entry) return;
    q[i] = null;
    entry.queueIndex = -1;
    this.live--;
    if (this.live === 0) {
      // Every slot is null again.
      this.head = 0;
      this.tail = 0;
      // An early timer is harmless (it re-arms); only an empty queue must not keep one.
      this.disarm();
      return;
    }
    while (q[this.head] === null) this.head++;
    while (q[this.tail - 1] === null) this.tail--;
  }

  /** The array is full to its end: squeeze the holes out in place, or grow it when few. */
  private makeRoom(): void {
    const q = this.queue;
    const target = this.live * 2 <= q.length ? q : new Array<T | null>(q.length * 2).fill(null);
    let n = 0;
    for (let i = this.head; i < this.tail; i++) {
      const e = q[i];
      if (e === null) continue;
      q[i] = null;
      target[n] = e;
      e.queueIndex = n++;
    }
    this.queue = target;
    this.head = 0;
    this.tail = n;
  }

  /** Expires every entry whose deadline is at or before now. */
  expireDue(): void {
    const now = this.scheduler.nowMs();
    while (this.live > 0 && (this.queue[this.head] as T).deadlineMs <= now) {
      const top = this.queue[this.head] as T;
      this.remove(top);
      this.onExpired(top);
    }
  }

  private arm(): void {
    this.disarm();
    if (this.live === 0) return;
    const at = (this.queue[this.head] as T).deadlineMs;
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
    if (this.live > 0 && this.timer === null) this.arm();
  };
}
