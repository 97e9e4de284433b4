import { afterEach, describe, expect, it, vi } from "vitest";
import { collectGarbage, trimWhenSessionsClose } from "../../../src/daemon/memory-trim.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("trimWhenSessionsClose", () => {
  it("trims on the few ticks after the open-session count falls, never while it holds or grows; collects fully only when none is open", () => {
    vi.useFakeTimers();
    let open = 0;
    const calls: string[] = [];
    const stop = trimWhenSessionsClose(
      () => open,
      {
        collect: () => {
          calls.push("collect");
        },
        trim: () => {
          calls.push("trim");
          return true;
        },
      },
      1000,
      3,
    );
    open = 50;
    vi.advanceTimersByTime(5000);
    expect(calls).toEqual([]);
    // Down but not idle: trims only (sessions may be deciding: no collection pause).
    open = 10;
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual(["trim"]);
    // Idle: a full collection before each trim, for the ticks that follow.
    open = 0;
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual(["trim", "collect", "trim", "collect", "trim", "collect", "trim"]);
    stop();
    open = 5;
    vi.advanceTimersByTime(2000);
    open = 0;
    vi.advanceTimersByTime(10_000);
    expect(calls).toHaveLength(7);
  });
});

describe("collectGarbage", () => {
  it("runs a full collection without --expose-gc on the command line: an unreachable object is finalized", async () => {
    let finalized = false;
    const registry = new FinalizationRegistry(() => {
      finalized = true;
    });
    (() => {
      registry.register({ big: new Array(1000).fill(0) }, "x");
    })();
    for (let i = 0; i < 10 && !finalized; i++) {
      collectGarbage();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(finalized).toBe(true);
  });
});
