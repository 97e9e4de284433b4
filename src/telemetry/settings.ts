/**
 * What telemetry to run, read the way the OpenTelemetry ecosystem expects: the standard
 * `OTEL_*` environment (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/)
 * with icmpfwd's flags on top. A bad value is a start-up error naming the variable or flag.
 */

import { parseHostPort } from "../config.js";

export type TraceExporterKind = "otlp" | "console";
export type MetricExporterKind = "prometheus" | "otlp" | "console";
export type OtlpProtocol = "http/protobuf" | "http/json" | "grpc";

export type SamplerSetting =
  | { kind: "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off" }
  | { kind: "traceidratio" | "parentbased_traceidratio"; ratio: number };

export interface TelemetrySettings {
  serviceName: string;
  /** Trace exporters; empty: tracing is off (no spans, no traceparent in events). */
  traces: TraceExporterKind[];
  tracesProtocol: OtlpProtocol;
  sampler: SamplerSetting;
  /** Metric exporters; prometheus serves on `metricsListen`. */
  metrics: MetricExporterKind[];
  metricsProtocol: OtlpProtocol;
  /** HOST:PORT of the Prometheus endpoint, or null (off). */
  metricsListen: { host: string; port: number } | null;
  /** Distinct `session` label values of the decision histogram besides "other". */
  metricsMaxSessions: number;
  /** OTEL_METRIC_EXPORT_INTERVAL (ms) for OTLP and console pushes. */
  metricExportIntervalMs: number;
  /** OTEL_BSP_*: the batch span processor's delay (ms), queue and export batch sizes. */
  batchSpans: { scheduleDelayMs: number; maxQueueSize: number; maxExportBatchSize: number };
}

/** The flags that shape telemetry (config.ts holds them with the other options). */
export interface TelemetryFlags {
  /** `--metrics-listen`: HOST:PORT or "off". */
  metricsListen: string;
  /** `--metrics-max-sessions` (its default is the configuration schema's). */
  metricsMaxSessions: number;
  /** `--tracing`: an exporter, or none; unset: OTEL_TRACES_EXPORTER decides. */
  tracing?: "otlp" | "console" | "none";
  /** `--trace-sample-ratio`: head sampling ratio for root spans (parent-based). */
  traceSampleRatio?: number;
}

export class TelemetrySettingsError extends Error {}

type Env = Readonly<Record<string, string | undefined>>;

function list(env: Env, name: string): string[] | undefined {
  const v = env[name]?.trim();
  if (v === undefined || v === "") return undefined;
  return v
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
}

function protocolOf(env: Env, signal: "TRACES" | "METRICS"): OtlpProtocol {
  const name = env[`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`]
    ? `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`
    : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const v = (env[name] ?? "http/protobuf").trim();
  if (v === "http/protobuf" || v === "http/json" || v === "grpc") return v;
  throw new TelemetrySettingsError(`${name}: "${v}" is not one of http/protobuf, http/json, grpc`);
}

function samplerOf(env: Env, flagRatio: number | undefined): SamplerSetting {
  if (flagRatio !== undefined) return { kind: "parentbased_traceidratio", ratio: flagRatio };
  const kind = (env.OTEL_TRACES_SAMPLER ?? "parentbased_always_on").trim().toLowerCase();
  switch (kind) {
    case "always_on":
    case "always_off":
    case "parentbased_always_on":
    case "parentbased_always_off":
      return { kind };
    case "traceidratio":
    case "parentbased_traceidratio": {
      const arg = env.OTEL_TRACES_SAMPLER_ARG;
      const ratio = arg === undefined || arg.trim() === "" ? 1 : Number(arg);
      if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1)
        throw new TelemetrySettingsError(
          `OTEL_TRACES_SAMPLER_ARG: "${arg}" is not a ratio between 0 and 1`,
        );
      return { kind, ratio };
    }
    default:
      throw new TelemetrySettingsError(
        `OTEL_TRACES_SAMPLER: "${kind}" is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)`,
      );
  }
}

function hostPort(flag: string, v: string): { host: string; port: number } {
  const hp = parseHostPort(v);
  if (hp === null) throw new TelemetrySettingsError(`${flag}: "${v}" is not HOST:PORT or off`);
  return hp;
}

/**
 * Tracing is off unless asked for: `--tracing`, OTEL_TRACES_EXPORTER, or an OTLP endpoint in
 * the environment. Metrics: Prometheus on `--metrics-listen` unless OTEL_METRICS_EXPORTER
 * says otherwise, plus an OTLP push when an OTLP endpoint is set. OTEL_SDK_DISABLED=true turns
 * both off.
 */
export function telemetrySettings(
  flags: TelemetryFlags,
  env: Env = process.env,
): TelemetrySettings {
  const disabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true";
  const otlpEndpoint = (signal: "TRACES" | "METRICS"): boolean =>
    !!env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() ||
    !!env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`]?.trim();

  let traces: TraceExporterKind[];
  if (flags.tracing !== undefined) {
    traces = flags.tracing === "none" ? [] : [flags.tracing];
  } else {
    const named = list(env, "OTEL_TRACES_EXPORTER");
    traces = (named ?? (otlpEndpoint("TRACES") ? ["otlp"] : [])).flatMap((e) => {
      if (e === "none") return [];
      if (e === "otlp" || e === "console") return [e];
      throw new TelemetrySettingsError(
        `OTEL_TRACES_EXPORTER: "${e}" is not supported (otlp, console, none)`,
      );
    });
  }

  const namedMetrics = list(env, "OTEL_METRICS_EXPORTER");
  const metrics: MetricExporterKind[] = (
    namedMetrics ?? ["prometheus", ...(otlpEndpoint("METRICS") ? ["otlp"] : [])]
  ).flatMap((e) => {
    if (e === "none") return [];
    if (e === "prometheus" || e === "otlp" || e === "console") return [e];
    throw new TelemetrySettingsError(
      `OTEL_METRICS_EXPORTER: "${e}" is not supported (prometheus, otlp, console, none)`,
    );
  });
  const listen = flags.metricsListen.trim();
  const metricsListen = listen === "off" ? null : hostPort("--metrics-listen", listen);

  const positive = (name: string, dflt: number): number => {
    const v = env[name];
    const n = v === undefined || v.trim() === "" ? dflt : Number(v);
    if (!Number.isInteger(n) || n <= 0)
      throw new TelemetrySettingsError(`${name}: "${v}" is not a positive integer`);
    return n;
  };
  const metricExportIntervalMs = positive("OTEL_METRIC_EXPORT_INTERVAL", 60_000);
  // A larger queue than the SDK's 2048: at 100% sampling bursts of packets outrun the exporter.
  const batchSpans = {
    scheduleDelayMs: positive("OTEL_BSP_SCHEDULE_DELAY", 5000),
    maxQueueSize: positive("OTEL_BSP_MAX_QUEUE_SIZE", 8192),
    maxExportBatchSize: positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
  };

  const wantPrometheus = metrics.includes("prometheus") && metricsListen !== null;
  return {
    serviceName: env.OTEL_SERVICE_NAME?.trim() || "icmpfwd",
    traces: disabled ? [] : traces,
    tracesProtocol: protocolOf(env, "TRACES"),
    sampler: samplerOf(env, flags.traceSampleRatio),
    metrics: disabled ? [] : metrics.filter((m) => m !== "prometheus" || wantPrometheus),
    metricsProtocol: protocolOf(env, "METRICS"),
    metricsListen: disabled || !wantPrometheus ? null : metricsListen,
    metricsMaxSessions: flags.metricsMaxSessions,
    metricExportIntervalMs,
    batchSpans,
  };
}
