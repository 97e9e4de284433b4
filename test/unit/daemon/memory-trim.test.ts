import { getHeapSpaceStatistics } from "node:v8";
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
        young: () => ({ used: 0, committed: 1 << 20 }),
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

describe("trimWhenSessionsClose at start-up", () => {
  it("does nothing at start-up when no session has closed and nothing grew (serve.ts collects before serving)", () => {
    vi.useFakeTimers();
    const calls: string[] = [];
    const stop = trimWhenSessionsClose(
      () => 0,
      {
        collect: () => {
          calls.push("collect");
        },
        trim: () => {
          calls.push("trim");
          return true;
        },
        young: () => ({ used: 0, committed: 1 << 20 }),
      },
      1000,
      3,
    );
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual([]);
    stop();
  });
});

describe("trimWhenSessionsClose when quiet", () => {
  it("collects once when allocation goes quiet after it grew the young generation, sessions open or not", () => {
    vi.useFakeTimers();
    const calls: string[] = [];
    // Young generation per tick: busy (use rising fast, scavenges), then quiet, grown to 32 MB.
    const MB = 1 << 20;
    const young = [
      { used: 0, committed: MB },
      { used: 6 * MB, committed: 16 * MB },
      { used: 2 * MB, committed: 32 * MB },
      { used: 20 * MB, committed: 32 * MB },
      { used: 20.5 * MB, committed: 32 * MB },
      { used: 0.2 * MB, committed: MB },
      { used: 0.3 * MB, committed: MB },
    ];
    let tick = 0;
    const stop = trimWhenSessionsClose(
      () => 4,
      {
        collect: () => {
          calls.push(`collect@${tick}`);
        },
        trim: () => true,
        young: () => young[Math.min(tick, young.length - 1)],
      },
      1000,
      3,
    );
    for (tick = 1; tick < young.length; tick++) vi.advanceTimersByTime(1000);
    expect(calls).toEqual(["collect@4"]);
    stop();
  });
});

describe("collectGarbage", () => {
  it("gives back the young generation a burst of allocation grew (an ordinary full collection keeps it)", () => {
    const young = (): number =>
      getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0;
    let keep: object[] = [];
    for (let i = 0; i < 2_000_000; i++) {
      keep.push({ i, a: [i] });
      if (keep.length > 100_000) keep = [];
    }
    keep = [];
    const grown = young();
    collectGarbage();
    expect(grown).toBeGreaterThan(1 << 20);
    expect(young()).toBe(1 << 20);
  });

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
