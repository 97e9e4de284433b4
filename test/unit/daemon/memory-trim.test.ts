import { afterEach, describe, expect, it, vi } from "vitest";
import { trimWhenSessionsClose } from "../../../src/daemon/memory-trim.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("trimWhenSessionsClose", () => {
  it("trims on the few ticks after the open-session count falls, and never while it holds or grows", () => {
    vi.useFakeTimers();
    let open = 0;
    let trims = 0;
    const stop = trimWhenSessionsClose(
      () => open,
      () => {
        trims++;
        return true;
      },
      1000,
      3,
    );
    open = 50;
    vi.advanceTimersByTime(5000);
    expect(trims).toBe(0);
    open = 10;
    vi.advanceTimersByTime(1000);
    expect(trims).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(trims).toBe(3);
    stop();
    open = 0;
    vi.advanceTimersByTime(10_000);
    expect(trims).toBe(3);
  });
});
