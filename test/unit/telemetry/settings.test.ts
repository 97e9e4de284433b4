/** Telemetry settings from the standard OTEL_* environment and icmpfwd's flags. */
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { TelemetrySettingsError, telemetrySettings } from "../../../src/telemetry/settings.js";

const flags = { metricsListen: "127.0.0.1:9464", metricsMaxSessions: 100 };

describe("telemetry settings", () => {
  it("defaults: tracing off, Prometheus on 127.0.0.1:9464, service name icmpfwd", () => {
    const s = telemetrySettings(flags, {});
    expect(s.traces).toEqual([]);
    expect(s.metrics).toEqual(["prometheus"]);
    expect(s.metricsListen).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(s.serviceName).toBe("icmpfwd");
    expect(s.sampler).toEqual({ kind: "parentbased_always_on" });
    expect(s.tracesProtocol).toBe("http/protobuf");
  });

  it("an OTLP endpoint in the environment turns on OTLP traces and a metrics push", () => {
    const s = telemetrySettings(flags, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" });
    expect(s.traces).toEqual(["otlp"]);
    expect(s.metrics).toEqual(["prometheus", "otlp"]);
  });

  it("OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER choose the exporters", () => {
    const s = telemetrySettings(flags, {
      OTEL_TRACES_EXPORTER: "console, otlp",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_SERVICE_NAME: "edge-1",
    });
    expect(s.traces).toEqual(["console", "otlp"]);
    expect(s.metrics).toEqual(["otlp"]);
    expect(s.metricsListen).toBeNull();
    expect(s.tracesProtocol).toBe("grpc");
    expect(s.serviceName).toBe("edge-1");
  });

  it("--tracing overrides the environment; none turns tracing off", () => {
    expect(telemetrySettings({ ...flags, tracing: "console" }, {}).traces).toEqual(["console"]);
    expect(
      telemetrySettings({ ...flags, tracing: "none" }, { OTEL_TRACES_EXPORTER: "otlp" }).traces,
    ).toEqual([]);
  });

  it("--metrics-listen off turns the Prometheus endpoint off", () => {
    const s = telemetrySettings({ ...flags, metricsListen: "off" }, {});
    expect(s.metricsListen).toBeNull();
    expect(s.metrics).toEqual([]);
  });

  it("--metrics-max-sessions reaches the settings (the schema's default: 100)", () => {
    expect(telemetrySettings(flags, {}).metricsMaxSessions).toBe(100);
    expect(resolveConfig({}).metricsMaxSessions).toBe(100);
    expect(telemetrySettings({ ...flags, metricsMaxSessions: 7 }, {}).metricsMaxSessions).toBe(7);
  });

  it("OTEL_TRACES_SAMPLER(_ARG) and --trace-sample-ratio set head sampling", () => {
    expect(
      telemetrySettings(flags, {
        OTEL_TRACES_SAMPLER: "traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.01",
      }).sampler,
    ).toEqual({ kind: "traceidratio", ratio: 0.01 });
    expect(telemetrySettings({ ...flags, traceSampleRatio: 0.5 }, {}).sampler).toEqual({
      kind: "parentbased_traceidratio",
      ratio: 0.5,
    });
  });

  it("OTEL_SDK_DISABLED=true turns everything off", () => {
    const s = telemetrySettings(flags, {
      OTEL_SDK_DISABLED: "true",
      OTEL_TRACES_EXPORTER: "otlp",
    });
    expect([s.traces, s.metrics, s.metricsListen]).toEqual([[], [], null]);
  });

  it.each([
    [{ OTEL_TRACES_EXPORTER: "jaeger" }, /^OTEL_TRACES_EXPORTER: "jaeger" is not supported/],
    [{ OTEL_METRICS_EXPORTER: "statsd" }, /^OTEL_METRICS_EXPORTER: "statsd"/],
    [{ OTEL_TRACES_SAMPLER: "sometimes" }, /^OTEL_TRACES_SAMPLER: "sometimes"/],
    [
      { OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" },
      /^OTEL_TRACES_SAMPLER_ARG: "2" is not a ratio/,
    ],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: "udp" }, /^OTEL_EXPORTER_OTLP_PROTOCOL: "udp"/],
    [{ OTEL_METRIC_EXPORT_INTERVAL: "soon" }, /^OTEL_METRIC_EXPORT_INTERVAL: "soon"/],
    [{ OTEL_BSP_SCHEDULE_DELAY: "-1" }, /^OTEL_BSP_SCHEDULE_DELAY: "-1"/],
  ])("a bad value is refused naming the variable: %o", (env, message) => {
    expect(() => telemetrySettings(flags, env)).toThrow(TelemetrySettingsError);
    expect(() => telemetrySettings(flags, env)).toThrow(message);
  });

  it("a bad --metrics-listen is refused naming the flag", () => {
    expect(() => telemetrySettings({ ...flags, metricsListen: "9464" }, {})).toThrow(
      /^--metrics-listen: "9464" is not HOST:PORT or off/,
    );
  });
});
