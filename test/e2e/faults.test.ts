/**
 * Fault injection through a real TUN, short version (issue #14 item 3; `npm run faults` runs
 * 60 s): the kernel's ping (IPv4 and IPv6, bounded by count and time) in a private namespace
 * at 2,000 Echo Requests/s for 4 s, while policy clients are killed, reset, restarted,
 * half-closed and drained every 100 ms and one stalls. One run; each test checks one rule.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type FaultReport, runFaults } from "../faults/runner.js";
import { describeNetns, Netns } from "../helpers/netns.js";

describeNetns("fault injection through the TUN (the kernel's ping, 2,000/s, 4 s)", () => {
  let ns: Netns;
  let r: FaultReport;

  beforeAll(async () => {
    ns = await Netns.create("faults");
    r = await runFaults({
      link: "tun",
      rate: 2000,
      seconds: 4,
      chaosEveryMs: 100,
      netns: { path: ns.path, run: (c, t) => ns.exec("sh", ["-c", c], { timeoutMs: t }) },
    });
  }, 60_000);

  afterAll(async () => {
    await ns?.destroy();
  });

  it("every request id has exactly one recorded outcome, and its replies match it", () => {
    expect(r.problems, JSON.stringify([r.problems, r.pings, r.kernel, r.outcomes])).toEqual([]);
    expect(r.requests).toBe(r.sent);
    expect(r.sent).toBe(8000);
  });

  it("the kernel-side ping statistics agree with the service's: answered = replied + synthetic", () => {
    const received = r.pings.reduce((a, p) => a + p.received, 0);
    const notConsumed = Object.entries(r.outcomes)
      .filter(([k]) => !k.startsWith("consume."))
      .reduce((a, [, v]) => a + v, 0);
    expect(received).toBe(notConsumed + r.synthetic);
    expect(r.kernel?.echoRepliesIn).toBe(received);
    expect(r.pings.map((p) => p.duplicates)).toEqual([0, 0]);
  });

  it("the kernel answered no Echo Request itself and the TUN dropped nothing", () => {
    expect(r.kernel?.echosIn).toBe(0);
    expect(r.kernel?.tunTxDropped).toBe(0);
  });

  it("faults happened while the pings ran", () => {
    const n = Object.values(r.tally.faults).reduce((a, b) => a + b, 0);
    expect(n).toBeGreaterThan(0);
    expect(r.tally.rejections.REJECTION_REASON_EXPIRED ?? 0).toBeGreaterThan(0);
  });

  it("no pending entry, timer or session remains, and RSS is back within 10 MiB", () => {
    expect([r.pending, r.deadlineEntries, r.timerArmed, r.sessions]).toEqual([0, 0, false, 0]);
    expect(r.rss.endBytes - r.rss.startBytes).toBeLessThanOrEqual(10 << 20);
  });
});
