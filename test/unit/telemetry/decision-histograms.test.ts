/**
 * The decision-time histogram's bounded `session` label: at most N client names at a time, the
 * rest under session="other" (exactly), a closed session's series gone, and data points and
 * Prometheus text identical to what the SDK's own Histogram made for the same decisions.
 */
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { emptyResource } from "@opentelemetry/resources";
import { type DataPoint, type Histogram, MeterProvider } from "@opentelemetry/sdk-metrics";
import { afterEach, describe, expect, it } from "vitest";
import type { OutcomeAction } from "../../../src/service/outcomes.js";
import type { DecidingSession } from "../../../src/service/request-telemetry.js";
import { DECISION_METRIC, DecisionHistograms } from "../../../src/telemetry/decision-histograms.js";
import { DECISION_BUCKETS } from "../../../src/telemetry/metrics.js";
import { TestReader } from "../../helpers/metric-reader.js";

const SCOPE = { name: "icmpfwd", version: "1.2.3" };
const providers: MeterProvider[] = [];
afterEach(async () => {
  for (const p of providers.splice(0)) await p.shutdown();
});

function readerOf(d: DecisionHistograms | null): TestReader {
  const reader = new TestReader({ metricProducers: d === null ? [] : [d] });
  providers.push(new MeterProvider({ readers: [reader] }));
  return reader;
}

let nextId = 0;
const session = (clientName: string): DecidingSession => ({
  sessionId: String(nextId++),
  clientName,
  streamLink: undefined,
});

/** "session/verdict" → histogram, for every data point the reader collects. */
async function series(reader: TestReader): Promise<Map<string, Histogram>> {
  const { resourceMetrics } = await reader.collect();
  const out = new Map<string, Histogram>();
  for (const sm of resourceMetrics.scopeMetrics)
    for (const m of sm.metrics) {
      if (m.descriptor.name !== DECISION_METRIC.name) continue;
      for (const p of m.dataPoints as DataPoint<Histogram>[])
        out.set(`${p.attributes.session}/${p.attributes.verdict}`, p.value);
    }
  return out;
}

const sessionLabels = (s: Map<string, Histogram>): Set<string> =>
  new Set([...s.keys()].map((k) => k.split("/")[0]));

const VERDICTS: OutcomeAction[] = ["reply", "consume", "fallthrough"];

describe("DecisionHistograms", () => {
  it("N+50 unique client names: N session values plus other, which carries the rest exactly", async () => {
    const N = 100;
    const d = new DecisionHistograms(N, SCOPE, emptyResource());
    const reader = readerOf(d);
    const sessions = Array.from({ length: N + 50 }, (_, i) => session(`client-${i}`));
    let total = 0;
    let rest = 0;
    sessions.forEach((s, i) => {
      // Session i decides i % 4 + 1 times, verdicts taking turns.
      for (let k = 0; k <= i % 4; k++) d.record(s, VERDICTS[k % 3], 0.001 * (k + 1));
      total += (i % 4) + 1;
      if (i >= N) rest += (i % 4) + 1;
    });
    const got = await series(reader);
    const labels = sessionLabels(got);
    expect(labels.size).toBe(N + 1);
    expect(labels.has("other")).toBe(true);
    for (let i = 0; i < N; i++) expect(labels.has(`client-${i}`)).toBe(true);
    const count = (label: string): number =>
      VERDICTS.reduce((n, v) => n + (got.get(`${label}/${v}`)?.count ?? 0), 0);
    for (let i = 0; i < N; i++) expect(count(`client-${i}`)).toBe((i % 4) + 1);
    expect(count("other")).toBe(rest);
    expect([...got.values()].reduce((n, h) => n + h.count, 0)).toBe(total);
    for (const h of got.values()) expect(h.buckets.counts.reduce((a, b) => a + b, 0)).toBe(h.count);

    // Every named session closes: their series go; "other" keeps what it counted.
    for (const s of sessions) d.sessionEnded(s);
    const after = await series(reader);
    expect(sessionLabels(after)).toEqual(new Set(["other"]));
    expect(VERDICTS.reduce((n, v) => n + (after.get(`other/${v}`)?.count ?? 0), 0)).toBe(rest);

    // The slots are free again.
    const late = session("late");
    d.record(late, "reply", 0.002);
    expect(sessionLabels(await series(reader))).toEqual(new Set(["other", "late"]));
  });

  it("sessions of one name share a series until the last closes; unnamed and other", async () => {
    const d = new DecisionHistograms(2, SCOPE, emptyResource());
    const reader = readerOf(d);
    const [a1, a2, anon, selfOther] = [session("a"), session("a"), session(""), session("other")];
    d.record(a1, "reply", 0.001);
    d.record(a2, "reply", 0.001);
    d.record(anon, "consume", 0.001);
    // Calls itself "other": counted there, never a series of its own to remove.
    d.record(selfOther, "reply", 0.001);
    let got = await series(reader);
    expect([...got.keys()].sort()).toEqual(["a/reply", "other/reply", "unnamed/consume"]);
    expect(got.get("a/reply")?.count).toBe(2);
    d.sessionEnded(a1);
    d.sessionEnded(selfOther);
    got = await series(reader);
    expect([...got.keys()].sort()).toEqual(["a/reply", "other/reply", "unnamed/consume"]);
    d.sessionEnded(a2);
    d.sessionEnded(anon);
    expect([...(await series(reader)).keys()]).toEqual(["other/reply"]);
    // A session that never decided has nothing to remove.
    d.sessionEnded(session("never"));
  });

  it("maxSessions 0: everything is other", async () => {
    const d = new DecisionHistograms(0, SCOPE, emptyResource());
    const reader = readerOf(d);
    d.record(session("x"), "reply", 0.5);
    d.record(session("y"), "fallthrough", 0.5);
    expect([...(await series(reader)).keys()].sort()).toEqual(["other/fallthrough", "other/reply"]);
  });

  it("no decisions: no metric (as an SDK histogram that recorded nothing)", async () => {
    const reader = readerOf(new DecisionHistograms(10, SCOPE, emptyResource()));
    expect((await reader.collect()).resourceMetrics.scopeMetrics).toEqual([]);
  });

  it("the same data points and Prometheus text as the SDK's Histogram had", async () => {
    // Values on, between, below and above the bounds (upper bounds are inclusive).
    const values = [0, 0.00005, 0.0001, 0.00011, 0.001, 0.0123, 0.5, 1, 9.99, 10, 10.5, 42];
    const sdkReader = readerOf(null);
    const sdk = (providers.at(-1) as MeterProvider)
      .getMeter(SCOPE.name, SCOPE.version)
      .createHistogram(DECISION_METRIC.name, {
        description: DECISION_METRIC.description,
        unit: DECISION_METRIC.unit,
        advice: { explicitBucketBoundaries: DECISION_BUCKETS },
      });
    const d = new DecisionHistograms(10, SCOPE, emptyResource());
    const ourReader = readerOf(d);
    const [s1, s2] = [session("one"), session("two")];
    values.forEach((v, i) => {
      const s = i % 2 === 0 ? s1 : s2;
      const verdict = VERDICTS[i % 3];
      sdk.record(v, { session: s.clientName, verdict });
      d.record(s, verdict, v);
    });
    const [a, b] = [await series(sdkReader), await series(ourReader)];
    expect(b).toEqual(a);
    // Series order aside (the SDK lists attribute sets as first seen, this one by session).
    const text = async (r: TestReader): Promise<string> =>
      new PrometheusSerializer()
        .serialize((await r.collect()).resourceMetrics)
        .split("\n")
        .sort()
        .join("\n");
    const [ta, tb] = [await text(sdkReader), await text(ourReader)];
    expect(tb).toBe(ta);
    expect(tb).toContain(
      'icmpfwd_decision_duration_seconds_bucket{session="one",verdict="reply",otel_scope_name="icmpfwd",otel_scope_version="1.2.3",le="0.0001"}',
    );
  });
});
