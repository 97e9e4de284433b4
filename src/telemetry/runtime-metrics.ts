/**
 * Node runtime metrics: event-loop delay and utilisation, GC durations and V8 heap spaces from
 * @opentelemetry/instrumentation-runtime-node, plus what it does not cover, read at collection
 * time only: resident set size, CPU time, and icmpfwd_build_info{version,node} = 1.
 *
 * Names follow OpenTelemetry's semantic conventions; the Prometheus exporter turns the dots into
 * underscores (nodejs.eventloop.delay.p99 → nodejs_eventloop_delay_p99).
 */
import type { MeterProvider } from "@opentelemetry/api";

/** Stops the runtime collectors (the event-loop histogram and the GC observer). */
export type StopRuntimeMetrics = () => void;

/** Event-loop delay sampling resolution (ms): the library's default, 10 ms. */
const MONITORING_PRECISION_MS = 10;

/** The instrumentation's collectors, by module (each exports the class of that name). */
const COLLECTORS = {
  eventLoopUtilizationCollector: "EventLoopUtilizationCollector",
  eventLoopTimeCollector: "EventLoopTimeCollector",
  eventLoopDelayCollector: "EventLoopDelayCollector",
  gcCollector: "GCCollector",
  heapSpacesSizeAndUsedCollector: "HeapSpacesSizeAndUsedCollector",
  activeResourcesCollector: "ActiveResourcesCollector",
} as const;

type Collector =
  import("@opentelemetry/instrumentation-runtime-node/build/src/metrics/baseCollector.js").BaseCollector;
type CollectorClass = new (config: { monitoringPrecision: number }) => Collector;

export async function startRuntimeMetrics(
  provider: MeterProvider,
  version: string,
): Promise<StopRuntimeMetrics> {
  const meter = provider.getMeter("icmpfwd.runtime", version);
  // The collectors themselves, not the package's entry point: RuntimeNodeInstrumentation extends
  // InstrumentationBase, whose module-loader hooks cost ~10 MB of RSS at rest and patch nothing
  // here. The collectors need only @opentelemetry/api and node:perf_hooks / node:v8.
  const collectors: Collector[] = [];
  for (const [file, name] of Object.entries(COLLECTORS)) {
    const mod = (await import(
      `@opentelemetry/instrumentation-runtime-node/build/src/metrics/${file}.js`
    )) as Record<string, CollectorClass>;
    const c = new mod[name]({ monitoringPrecision: MONITORING_PRECISION_MS });
    c.updateMetricInstruments(meter);
    c.enable();
    collectors.push(c);
  }

  const build = meter.createObservableGauge("icmpfwd_build_info", {
    description: "Always 1; the labels say which icmpfwd and which Node run",
  });
  build.addCallback((r) => r.observe(1, { version, node: process.versions.node }));
  const rss = meter.createObservableGauge("process.memory.usage", {
    description: "Resident set size",
    unit: "By",
  });
  rss.addCallback((r) => r.observe(process.memoryUsage.rss()));
  const cpu = meter.createObservableCounter("process.cpu.time", {
    description: "CPU time of this process by mode",
    unit: "s",
  });
  cpu.addCallback((r) => {
    const u = process.cpuUsage();
    r.observe(u.user / 1e6, { "cpu.mode": "user" });
    r.observe(u.system / 1e6, { "cpu.mode": "system" });
  });
  return () => {
    for (const c of collectors) c.disable();
  };
}
