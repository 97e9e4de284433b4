/**
 * DESIGN.md §5's metrics after a known sequence of requests, read through a MetricReader from
 * the service on a real loopback socket in front of a stack on the channel link.
 */
import { emptyResource } from "@opentelemetry/resources";
import { type DataPoint, type Histogram, MeterProvider } from "@opentelemetry/sdk-metrics";
import { afterEach, describe, expect, it } from "vitest";
import { CounterRegistry } from "../../../src/daemon/counters.js";
import { metricSourcesOf } from "../../../src/daemon/metric-sources.js";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { DecisionHistograms } from "../../../src/telemetry/decision-histograms.js";
import { registerServiceMetrics } from "../../../src/telemetry/metrics.js";
import { OtelRequestTelemetry } from "../../../src/telemetry/request-spans.js";
import { TestReader } from "../../helpers/metric-reader.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests, tick } from "../service/harness.js";

const t = serviceTests();
let provider: MeterProvider | null = null;
let reader: TestReader;

afterEach(async () => {
  await provider?.shutdown();
  provider = null;
});

/** The service and stack with every metric registered (decision times: at most `maxSessions` names). */
async function start(o: Parameters<typeof t.start>[0] = {}, maxSessions = 100): Promise<Harness> {
  const decisions = new DecisionHistograms(maxSessions, { name: "test" }, emptyResource());
  reader = new TestReader({ metricProducers: [decisions] });
  provider = new MeterProvider({ readers: [reader] });
  const meter = provider.getMeter("test");
  const h = await t.start({ ...o, telemetry: new OtelRequestTelemetry(null, decisions) });
  registerServiceMetrics(meter, metricSourcesOf(h.service, h.stack, new CounterRegistry()));
  return h;
}

/** Every data point of `name`, as "label=value,…" → value (sorted labels). */
async function points(name: string): Promise<Map<string, unknown>> {
  const { resourceMetrics } = await reader.collect();
  const out = new Map<string, unknown>();
  for (const sm of resourceMetrics.scopeMetrics)
    for (const m of sm.metrics) {
      if (m.descriptor.name !== name) continue;
      for (const p of m.dataPoints as DataPoint<unknown>[]) {
        const key = Object.entries(p.attributes)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, v]) => `${k}=${v}`)
          .join(",");
        out.set(key, p.value);
      }
    }
  return out;
}

/** The data points that are not zero. */
async function nonZero(name: string): Promise<Record<string, unknown>> {
  return Object.fromEntries([...(await points(name))].filter(([, v]) => v !== 0));
}

describe("metrics (DESIGN.md §5)", () => {
  it("icmpfwd_requests_total counts each outcome by cause and family", async () => {
    const h = await start();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }), v6Echo({ sequence: 3 }));
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 4 }), v6Echo({ sequence: 5 }));
    const [a, b] = await c.waitEvents(2);
    c.decide([a], Action.ACTION_REPLY);
    c.decide([b], Action.ACTION_CONSUME);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    expect(await nonZero("icmpfwd_requests_total")).toEqual({
      "cause=no_client,family=ipv4,outcome=fallthrough": 2,
      "cause=no_client,family=ipv6,outcome=fallthrough": 1,
      "cause=verdict,family=ipv4,outcome=reply": 1,
      "cause=verdict,family=ipv6,outcome=consume": 1,
    });
    // Every combination is exported, zeros included, so rates start from a known point.
    expect((await points("icmpfwd_requests_total")).size).toBe(2 * 3 * 7);
  });

  it("icmpfwd_decision_duration_seconds has one sample per verdict, by client name and verdict", async () => {
    const h = await start({ deadlineMs: 40 });
    const c = await t.connect({ clientName: "even" });
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }), v4Echo({ sequence: 3 }));
    const [a, b] = await c.waitEvents(3);
    c.decide([a, b], Action.ACTION_REPLY);
    // The third times out: no verdict, no sample.
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    const hist = (await points("icmpfwd_decision_duration_seconds")) as Map<string, Histogram>;
    expect([...hist.keys()]).toEqual(["session=even,verdict=reply"]);
    const v = hist.get("session=even,verdict=reply");
    expect(v?.count).toBe(2);
    expect(v?.sum).toBeGreaterThan(0);
    expect(v?.sum).toBeLessThan(0.04 * 2);
  });

  it("icmpfwd_decision_duration_seconds: at most N client names, the rest as other; a closed session's series goes", async () => {
    const h = await start({}, 2);
    // Each client sees only its own source, so each decides exactly its own requests.
    const names = ["a", "b", "c", "d"];
    const clients = [];
    for (const [i, name] of names.entries()) {
      const src = `198.18.0.${10 + i}`;
      const c = await t.connect({
        clientName: name,
        filter: {
          family: 0,
          sourcePrefixes: [`${src}/32`],
          destinationPrefixes: [],
          temporaryOnly: false,
        },
      });
      // Client i decides i + 1 requests.
      h.link.inject(...Array.from({ length: i + 1 }, (_, k) => v4Echo({ src, sequence: k })));
      c.decide(await c.waitEvents(i + 1), Action.ACTION_REPLY);
      await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
      clients.push(c);
    }
    const counts = async (): Promise<Record<string, number>> =>
      Object.fromEntries(
        [...((await points("icmpfwd_decision_duration_seconds")) as Map<string, Histogram>)].map(
          ([k, v]) => [k, v.count],
        ),
      );
    // a and b came first; c and d (3 + 4 decisions) are other.
    expect(await counts()).toEqual({
      "session=a,verdict=reply": 1,
      "session=b,verdict=reply": 2,
      "session=other,verdict=reply": 7,
    });
    clients[0].close();
    await clients[0].until(
      () => h.service.dispatcher.sessions.length === names.length - 1,
      "a's session closed",
    );
    expect(await counts()).toEqual({
      "session=b,verdict=reply": 2,
      "session=other,verdict=reply": 7,
    });
  });

  it("icmpfwd_inflight and icmpfwd_sessions are gauges of now", async () => {
    const h = await start();
    const c = await t.connect();
    await t.connect({ mode: 2 }); // MODE_OBSERVE
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    const events = await c.waitEvents(2);
    expect(await points("icmpfwd_inflight")).toEqual(new Map([["", 2]]));
    expect(await points("icmpfwd_sessions")).toEqual(
      new Map([
        ["mode=decide", 1],
        ["mode=observe", 1],
      ]),
    );
    c.decide(events, Action.ACTION_REPLY);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    expect(await points("icmpfwd_inflight")).toEqual(new Map([["", 0]]));
  });

  it("icmpfwd_rejections_total counts refused verdicts by reason", async () => {
    const h = await start();
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_REPLY);
    c.decide([e], Action.ACTION_REPLY);
    c.verdicts([{ requestId: 999_999n, action: Action.ACTION_REPLY }]);
    await c.until(() => c.rejections.length === 2, "two rejections");
    expect(await nonZero("icmpfwd_rejections_total")).toEqual({
      "reason=already_decided": 1,
      "reason=unknown_request": 1,
    });
  });

  it("icmpfwd_netstack_packets_total and icmpfwd_netstack_drops_total read the netstack's counters", async () => {
    const h = await start();
    const bad = v4Echo({ sequence: 1 });
    bad[10] ^= 0xff; // IPv4 header checksum
    h.link.inject(bad, v4Echo({ sequence: 2 }), v6Echo({ sequence: 3 }));
    await tick();
    expect(await nonZero("icmpfwd_netstack_packets_total")).toEqual({
      "direction=received,protocol=ipv4,type=all": 2,
      "direction=received,protocol=ipv4,type=delivered": 1,
      "direction=sent,protocol=ipv4,type=all": 1,
      "direction=received,protocol=ipv6,type=all": 1,
      "direction=received,protocol=ipv6,type=delivered": 1,
      "direction=sent,protocol=ipv6,type=all": 1,
      "direction=received,protocol=icmpv4,type=echo_request": 1,
      "direction=sent,protocol=icmpv4,type=echo_reply": 1,
      "direction=received,protocol=icmpv6,type=echo_request": 1,
      "direction=sent,protocol=icmpv6,type=echo_reply": 1,
    });
    expect(await nonZero("icmpfwd_netstack_drops_total")).toEqual({ "reason=malformed": 1 });
  });
});
