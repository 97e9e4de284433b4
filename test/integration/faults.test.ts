/**
 * Fault injection, short version (issue #14 item 3; `npm run faults` runs 60 s): 10,000 Echo
 * Requests/s for 5 s on the channel link while policy clients (in their own process) are killed
 * with a TCP RST, reset, restarted, half-closed and drained every 100 ms, one client stalls, and
 * verdicts come late, twice or delayed. One run; each test checks one rule of its report.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { EXPECTED_REJECTIONS, type FaultReport, runFaults } from "../faults/runner.js";

describe("fault injection on the channel link (10,000 requests/s, 5 s)", () => {
  let r: FaultReport;

  beforeAll(async () => {
    r = await runFaults({ link: "channel", rate: 10_000, seconds: 5, chaosEveryMs: 100 });
  }, 60_000);

  it("every request id has exactly one recorded outcome, and its replies match it", () => {
    // runner.ts checks each id: started once, ended once, Echo Replies = what the outcome
    // promises (+ its synthetic reply); the problems list names any id that broke a rule.
    expect(r.problems).toEqual([]);
    expect(r.requests).toBe(r.sent);
    expect(r.sent).toBe(50_000);
  });

  it("the service's outcome counters equal the per-id records", () => {
    for (const [k, v] of Object.entries(r.outcomes))
      expect(r.counters[`service.outcomes.${k}`]).toBe(v);
    const sum = Object.values(r.outcomes).reduce((a, b) => a + b, 0);
    expect(sum).toBe(r.sent);
    expect(r.counters["service.requests"]).toBe(r.sent);
  });

  it("answered = replied + fallthrough + synthetic", () => {
    const notConsumed = Object.entries(r.outcomes)
      .filter(([k]) => !k.startsWith("consume."))
      .reduce((a, [, v]) => a + v, 0);
    expect(r.answered).toBe(notConsumed + r.synthetic);
    expect(r.synthetic).toBe(r.counters["service.synthetic.sent"]);
  });

  it("every fault happened: kills, resets, restarts, half-closes, drains, late and duplicate verdicts", () => {
    for (const f of ["kill", "reset", "restart", "halfClose", "drain"])
      expect(r.tally.faults[f] ?? 0).toBeGreaterThan(0);
    expect(r.tally.lateVerdicts).toBeGreaterThan(0);
    expect(r.tally.duplicateVerdicts).toBeGreaterThan(0);
    expect(r.tally.rejections.REJECTION_REASON_EXPIRED ?? 0).toBeGreaterThan(0);
    expect(r.tally.rejections.REJECTION_REASON_ALREADY_DECIDED ?? 0).toBeGreaterThan(0);
  });

  it("only late, duplicate and too-late synthetic messages are rejected", () => {
    expect(Object.keys(r.tally.rejections).filter((k) => !EXPECTED_REJECTIONS.has(k))).toEqual([]);
  });

  it("the stalled client's requests time out", () => {
    expect(r.outcomes["fallthrough.timeout"] ?? 0).toBeGreaterThan(0);
  });

  it("no pending entry, deadline entry, timer, session or synthetic copy remains", () => {
    expect([r.pending, r.deadlineEntries, r.timerArmed, r.sessions, r.syntheticHeld]).toEqual([
      0,
      0,
      false,
      0,
      0,
    ]);
  });

  it("RSS is back within 10 MiB of its start", () => {
    expect(r.rss.endBytes - r.rss.startBytes).toBeLessThanOrEqual(10 << 20);
  });
});
