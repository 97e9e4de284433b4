/**
 * Bounded telemetry cardinality from the outside, in a private namespace: 5,000 decide sessions
 * with unique client names each decide one kernel ping and close. While a batch is open, the
 * decision histogram has at most --metrics-max-sessions (100) client names plus "other", which
 * counts the rest exactly; once they have closed, /metrics is back to a small size, and
 * another 5,000 sessions add no memory.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns, sleep, waitFor } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/many-sessions.mjs", import.meta.url));
const METRICS_URL = "http://127.0.0.1:9464/metrics";
const MAX_SESSIONS = 100;
/** Sessions open at once: more than MAX_SESSIONS, over connections of 50 streams. */
const BATCH = 200;
const CONNECTIONS = 4;
const SESSIONS = 5000;
/** How long RSS may take to come back after the sessions close. */
const SETTLE_MS = 15_000;

interface RunResult {
  error?: string;
  decided: number;
  replies: number;
  firstBatch: { bytes: number; counts: Record<string, number> } | null;
  phases: Record<string, number>;
  elapsedMs: number;
}

describeNetns("bounded decision-histogram cardinality", () => {
  let ns: Netns;
  let serve: ServeProcess;

  beforeAll(async () => {
    ns = await Netns.create("card");
    serve = await startServe(ns, [
      "--metrics-listen",
      "127.0.0.1:9464",
      "--metrics-max-sessions",
      String(MAX_SESSIONS),
      // Verdicts wait for a whole batch's requests (see the fixture).
      "--deadline",
      "5000",
    ]);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  async function sessions(total: number, tag: string): Promise<RunResult> {
    const t0 = Date.now();
    const r = await ns.exec(
      process.execPath,
      [
        FIXTURE,
        "127.0.0.1:50051",
        String(total),
        String(BATCH),
        String(CONNECTIONS),
        tag,
        METRICS_URL,
      ],
      { timeoutMs: 58_000 },
    );
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as RunResult;
    // Where the time went, should a run be slow.
    console.log(`${tag}: ${total} sessions, ${Date.now() - t0} ms, ${JSON.stringify(out.phases)}`);
    if (r.code !== 0 || out.error !== undefined)
      throw new Error(`many-sessions: ${r.stdout} ${r.stderr}`);
    return out;
  }

  async function scrape(): Promise<string> {
    const r = await ns.exec(process.execPath, [
      "-e",
      `fetch(${JSON.stringify(METRICS_URL)}).then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ]);
    expect(r.code).toBe(0);
    return r.stdout;
  }

  /** The serve process's resident set (kB); `ip netns exec` execs node, so its pid is serve's. */
  function rssKb(): number {
    const status = readFileSync(`/proc/${serve.proc.child.pid}/status`, "utf8");
    expect(/^Name:\s+node$/m.test(status)).toBe(true);
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  }

  /** session label → decisions counted, from the decision histogram's _count series. */
  function decisionCounts(text: string): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const line of text.split("\n")) {
      if (!line.startsWith("icmpfwd_decision_duration_seconds_count{")) continue;
      const session = /session="([^"]*)"/.exec(line)?.[1] ?? "";
      counts[session] = (counts[session] ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return counts;
  }

  /** RSS (kB) before the 5,000 sessions and after them. */
  const rss = { before: 0, after: 0 };

  it("5,000 sessions with unique names: at most 100 names plus other while open; small /metrics and RSS back within 20 MB once closed", async () => {
    // A first batch loads and warms what every session uses (code, buffers, the HTTP/2
    // paths), so the baseline is the running process rather than a cold one.
    const warm = await sessions(BATCH, "warm");
    expect(warm.decided).toBe(BATCH);
    const otherAfterWarmup = BATCH - MAX_SESSIONS;
    expect(decisionCounts(await scrape())).toEqual({ other: otherAfterWarmup });
    await sleep(2000);
    rss.before = rssKb();
    const metricsBefore = (await scrape()).length;

    const run = await sessions(SESSIONS, "s");
    // Every request was decided and replied to (replies counted by the namespace's kernel).
    expect({ decided: run.decided, replies: run.replies }).toEqual({
      decided: SESSIONS,
      replies: SESSIONS,
    });
    // While the first batch was open: 100 names with their one decision each, and "other"
    // with exactly the rest (the warm-up's included).
    const open = run.firstBatch?.counts ?? {};
    const names = Object.keys(open).filter((k) => k !== "other");
    expect(names.length).toBe(MAX_SESSIONS);
    for (const n of names) expect(open[n]).toBe(1);
    expect(open.other).toBe(otherAfterWarmup + BATCH - MAX_SESSIONS);

    // All closed: only "other" is left, holding every decision that had no name of its own.
    const text = await scrape();
    expect(decisionCounts(text)).toEqual({
      other: otherAfterWarmup + (SESSIONS / BATCH) * (BATCH - MAX_SESSIONS),
    });
    expect(text.length).toBeLessThan(256 * 1024);

    // RSS comes back: once no session is open the service collects fully and trims the
    // allocator (src/daemon/memory-trim.ts). Polled: both happen on its 2 s tick.
    const closedAt = performance.now();
    await waitFor(() => rssKb() - rss.before < 20 * 1024, {
      what: "RSS within 20 MB of its baseline",
      timeoutMs: SETTLE_MS,
    }).catch(() => {});
    rss.after = rssKb();
    console.log(
      `${SESSIONS} sessions in ${run.elapsedMs} ms; /metrics ${metricsBefore} → ${text.length} bytes (${run.firstBatch?.bytes} with a batch open); RSS ${rss.before} → ${rss.after} kB ${Math.round(performance.now() - closedAt)} ms after they closed`,
    );
    expect(rss.after - rss.before).toBeLessThan(20 * 1024);
  }, 60_000);
});
