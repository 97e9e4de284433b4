import { describe, expect, it } from "vitest";
import { type DeadlineEntry, Deadlines, type Scheduler } from "../../../src/service/deadlines.js";

/** One timer at a time is all Deadlines arms; fire() runs it. */
class OneTimer implements Scheduler {
  now = 0;
  timer: { fn: () => void; at: number } | null = null;
  nowMs(): number {
    return this.now;
  }
  setTimer(fn: () => void, delayMs: number): unknown {
    this.timer = { fn, at: this.now + delayMs };
    return this.timer;
  }
  clearTimer(handle: unknown): void {
    if (this.timer === handle) this.timer = null;
  }
  advance(to: number): void {
    this.now = to;
    const t = this.timer;
    if (t !== null && t.at <= to) {
      this.timer = null;
      t.fn();
    }
  }
}

const entry = (deadlineMs: number): DeadlineEntry & { name: number } => ({
  deadlineMs,
  queueIndex: -1,
  name: deadlineMs,
});

describe("the deadline queue", () => {
  it("expires in deadline order, also for entries added out of order, and holds no timer when empty", () => {
    const clock = new OneTimer();
    const expired: number[] = [];
    const d = new Deadlines<ReturnType<typeof entry>>(clock, (e) => expired.push(e.name));
    const es = [10, 20, 30, 40, 15, 5, 40, 35].map(entry);
    for (const e of es) d.add(e);
    expect(d.size).toBe(8);
    d.remove(es[2]); // 30
    d.remove(es[2]); // twice: a no-op
    expect(d.size).toBe(7);
    clock.advance(16);
    expect(expired).toEqual([5, 10, 15]);
    for (let t = 17; t <= 50; t++) clock.advance(t);
    expect(expired).toEqual([5, 10, 15, 20, 35, 40, 40]);
    expect(d.size).toBe(0);
    expect(d.armed).toBe(false);
  });

  it("stays exact over many removals in any order (the holes are squeezed out)", () => {
    const clock = new OneTimer();
    const expired: number[] = [];
    const d = new Deadlines<ReturnType<typeof entry>>(clock, (e) => expired.push(e.name));
    const es = Array.from({ length: 10_000 }, (_, i) => entry(1000 + i));
    for (const e of es) d.add(e);
    // Keep every 97th; remove the rest, from the middle outwards.
    const kept = es.filter((_, i) => i % 97 === 0);
    for (let k = 0; k < es.length; k++) {
      const i = k % 2 === 0 ? 5000 + k / 2 : 5000 - (k + 1) / 2;
      if (i >= 0 && i < es.length && i % 97 !== 0) d.remove(es[i]);
    }
    expect(d.size).toBe(kept.length);
    for (const e of kept) expect(e.queueIndex).toBeGreaterThanOrEqual(0);
    clock.advance(20_000);
    while (clock.timer !== null) clock.advance(clock.timer.at);
    expect(expired).toEqual(kept.map((e) => e.name));
    expect(d.armed).toBe(false);
  });
});
