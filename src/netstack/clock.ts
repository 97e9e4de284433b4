/** Monotonic time for the stack (rate limiter, timeouts), replaceable in tests. */
export interface Clock {
  /** Milliseconds on a monotonic scale (fractions allowed). */
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => performance.now() };

/** A clock that only moves when told to (gVisor's faketime.ManualClock). */
export class ManualClock implements Clock {
  constructor(private now = 0) {}
  nowMs(): number {
    return this.now;
  }
  advance(ms: number): void {
    this.now += ms;
  }
}
