/**
 * One counter registry: GetStats, the SIGUSR1 / --stats-file dump and the Prometheus
 * instruments name the same counters and gauges, link.* included. The daemon is composed as
 * `icmpfwd serve` composes it (src/daemon/root.ts), on the in-memory channel link.
 */
import { credentials } from "@grpc/grpc-js";
import { type DataPoint, MeterProvider } from "@opentelemetry/sdk-metrics";
import { afterEach, describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { compose, type Parts } from "../../../src/daemon/root.js";
import {
  EchoForwarderClient,
  type GetStatsResponse,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { ChannelEndpoint } from "../../../src/link/channel.js";
import type { Telemetry } from "../../../src/telemetry/index.js";
import { createLogger } from "../../../src/telemetry/logger.js";
import { registerServiceMetrics } from "../../../src/telemetry/metrics.js";
import { TestReader } from "../../helpers/metric-reader.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";

let parts: Parts | null = null;
let provider: MeterProvider | null = null;
afterEach(async () => {
  await parts?.service.close();
  parts?.stack.close();
  await provider?.shutdown();
  parts = null;
  provider = null;
});

async function getStats(address: string): Promise<GetStatsResponse> {
  const client = new EchoForwarderClient(address, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) =>
      client.getStats({}, (e, v) => (e ? reject(e) : resolve(v))),
    );
  } finally {
    client.close();
  }
}

/** The values of one label across an instrument's data points. */
async function labelValues(reader: TestReader, metric: string, label: string): Promise<string[]> {
  const { resourceMetrics } = await reader.collect();
  const out: string[] = [];
  for (const sm of resourceMetrics.scopeMetrics)
    for (const m of sm.metrics)
      if (m.descriptor.name === metric)
        for (const p of m.dataPoints as DataPoint<unknown>[]) out.push(String(p.attributes[label]));
  return out.sort();
}

describe("counter registry", () => {
  it("GetStats, the stats dump and the Prometheus series name the same counters and gauges", async () => {
    const reader = new TestReader();
    provider = new MeterProvider({ readers: [reader] });
    const meter = provider.getMeter("test");
    const telemetry = {
      requests: null,
      observe: (src) => registerServiceMetrics(meter, src),
    } as Pick<Telemetry, "requests" | "observe"> as Telemetry;
    const link = new ChannelEndpoint();
    const linkStats = { packetsRead: 0, packetsWritten: 0 };
    parts = await compose(resolveConfig({ listen: "127.0.0.1:0" }), link, {
      log: createLogger("silent"),
      telemetry,
      resolve: null,
      linkStats: () => linkStats,
    });
    link.inject(v4Echo(), v6Echo());
    linkStats.packetsRead = 2;

    const grpc = await getStats(parts.service.address);
    const fromGetStats = [...Object.keys(grpc.counters), ...Object.keys(grpc.gauges)].sort();
    const fromDump = Object.keys(parts.counters.flat()).sort();
    const fromPrometheus = [
      ...(await labelValues(reader, "icmpfwd_counter", "counter")),
      ...(await labelValues(reader, "icmpfwd_gauge", "gauge")),
    ].sort();

    expect(fromDump).toEqual(fromGetStats);
    expect(fromPrometheus).toEqual(fromGetStats);
    // Every part's counters are in the one set: the netstack's, the link's and the service's.
    expect(fromGetStats).toEqual(
      expect.arrayContaining([
        "ipv4.packetsReceived",
        "link.packetsRead",
        "service.outcomes.fallthrough.noClient",
        "service.inFlight",
      ]),
    );
    expect(grpc.counters["link.packetsRead"]).toBe(2n);
    expect(grpc.counters["service.outcomes.fallthrough.noClient"]).toBe(2n);
    expect(parts.counters.flat()["ipv4.packetsReceived"]).toBe(1);
  });
});
