/** What the Prometheus / OTLP instruments read from the running parts. */
import type { Stack } from "../netstack/stack.js";
import type { EchoService } from "../service/index.js";
import type { MetricSources } from "../telemetry/metrics.js";
import type { CounterRegistry } from "./counters.js";

export function metricSourcesOf(
  service: EchoService,
  stack: Stack,
  registry: CounterRegistry,
): MetricSources {
  const d = service.dispatcher;
  const f = service.forwarder;
  return {
    outcomes: d.counters,
    // Under the action the Forwarder gives now (a reload may have changed it).
    forwarderOverflow: () => ({
      action: f.overflowAction,
      ipv4: f.stats.overflow - f.stats.overflowIpv6,
      ipv6: f.stats.overflowIpv6,
    }),
    inFlight: () => d.pendingCount,
    sessions: () => ({ decide: d.sessions.length, observe: d.observers.length }),
    stats: stack.stats,
    registry: () => registry.snapshot(),
  };
}
