/**
 * Observability end to end, in a private namespace: `icmpfwd serve` exporting OTLP/HTTP to a
 * receiver the test runs (protobuf decoded with protobufjs), real policy clients deciding kernel
 * pings, and the Prometheus endpoint read and parsed as Prometheus text.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import parsePrometheus from "parse-prometheus-text-format";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import {
  describeNetns,
  exec,
  inCI,
  Netns,
  parsePing,
  type Spawned,
  tempDir,
  waitFor,
} from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";

const RECEIVER = fileURLToPath(new URL("./fixtures/otlp-receiver.mjs", import.meta.url));
const TRACED_POLICY = fileURLToPath(new URL("./fixtures/traced-policy.mjs", import.meta.url));
const CLIENT_LIB = fileURLToPath(new URL("../../clients/ts/dist/index.js", import.meta.url));
const PYTHON = "/usr/bin/python3";
const PYTHON_CLIENT = fileURLToPath(new URL("../../clients/python", import.meta.url));
const OTLP_PORT = 4318;

interface ReceivedSpan {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  attributes: Record<string, string | number | boolean>;
  links: { traceId: string; spanId: string }[];
}

function spansOf(receiver: Spawned): ReceivedSpan[] {
  return receiver
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as ReceivedSpan);
}

describeNetns("observability end to end", () => {
  let ns: Netns;
  let receiver: Spawned;
  let serve: ServeProcess | null = null;
  let clients: Spawned[] = [];

  beforeAll(async () => {
    for (const f of [CLIENT_LIB, TRACED_POLICY])
      if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
    ns = await Netns.create("otel");
    receiver = ns.spawnNode(RECEIVER, [String(OTLP_PORT)]);
    await waitFor(() => receiver.output().includes("listening"), { what: "the OTLP receiver" });
  });

  afterEach(async () => {
    for (const c of clients) if (c.child.exitCode === null) c.child.kill("SIGKILL");
    clients = [];
    if (serve !== null) await serve.stop();
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  const otlpEnv = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${OTLP_PORT}`,
    OTEL_BSP_SCHEDULE_DELAY: "100",
  };

  async function startTraced(): Promise<string> {
    const socket = join(tempDir("icmpfwd-otel-"), "s.sock");
    serve = await startServe(ns, ["--listen", `unix:${socket}`, "--metrics-listen", "off"], {
      ...otlpEnv,
      OTEL_SERVICE_NAME: "icmpfwd-e2e",
      OTEL_METRICS_EXPORTER: "none",
    });
    return socket;
  }

  async function waitConnected(c: Spawned, marker: string): Promise<void> {
    await waitFor(() => c.output().includes(marker) || c.child.exitCode !== null, {
      what: "the client to connect",
      timeoutMs: 15_000,
    });
    if (c.child.exitCode !== null) throw new Error(`client exited: ${c.output()}`);
  }

  it("a kernel ping decided by the TypeScript client is one trace: request span, decide span, the client's child span", async () => {
    const socket = await startTraced();
    const client = ns.spawnNode(TRACED_POLICY, [`unix:${socket}`], {
      ...process.env,
      ...otlpEnv,
      OTEL_SERVICE_NAME: "ts-policy",
    });
    clients.push(client);
    await waitConnected(client, "connected");
    const r = await ns.exec("ping", ["-n", "-c", "1", "-W", "2", "198.18.0.2"]);
    expect(parsePing(r.stdout).received).toBe(1);
    const spans = await waitFor(
      () => {
        const all = spansOf(receiver);
        const req = all.find(
          (s) => s.name === "icmpfwd.echo_request" && s.service === "icmpfwd-e2e",
        );
        const child = all.find((s) => s.service === "ts-policy" && s.traceId === req?.traceId);
        return req !== undefined && child !== undefined ? all : null;
      },
      { what: "the three spans at the receiver", timeoutMs: 10_000 },
    );
    const req = spans.find((s) => s.name === "icmpfwd.echo_request") as ReceivedSpan;
    const trace = spans.filter((s) => s.traceId === req.traceId);
    expect(trace.map((s) => `${s.service} ${s.name}`).sort()).toEqual([
      "icmpfwd-e2e icmpfwd.decide",
      "icmpfwd-e2e icmpfwd.echo_request",
      "ts-policy icmpfwd.policy.decide",
    ]);
    const decide = trace.find((s) => s.name === "icmpfwd.decide") as ReceivedSpan;
    const child = trace.find((s) => s.service === "ts-policy") as ReceivedSpan;
    expect(req.parentSpanId).toBe("");
    expect(decide.parentSpanId).toBe(req.spanId);
    expect(child.parentSpanId).toBe(decide.spanId);
    expect(req.attributes).toMatchObject({
      "network.type": "ipv4",
      "source.address": "198.18.0.1",
      "destination.address": "198.18.0.2",
      "icmp.sequence": 1,
      "icmpfwd.verdict": "reply",
      "icmpfwd.cause": "verdict",
    });
    // The Connect stream's span (the service's call spans) is linked, not a parent; it ends with
    // the stream.
    client.child.kill("SIGTERM");
    const connect = await waitFor(
      () =>
        spansOf(receiver).find(
          (s) => s.service === "icmpfwd-e2e" && s.name === "grpc.icmpfwd.v1.EchoForwarder/Connect",
        ) ?? null,
      { what: "the Connect stream's span (ends with the stream)", timeoutMs: 10_000 },
    );
    expect(decide.links).toEqual([{ traceId: connect.traceId, spanId: connect.spanId }]);
    // Admin RPCs get a span of their own too.
    const stats = await ns.exec(process.execPath, [
      MAIN_JS,
      "stats",
      "--target",
      `unix:${socket}`,
      "--json",
    ]);
    expect(stats.code).toBe(0);
    await waitFor(
      () =>
        spansOf(receiver).find((s) => s.name === "grpc.icmpfwd.v1.EchoForwarder/GetStats") ?? null,
      { what: "the GetStats span", timeoutMs: 10_000 },
    );
  });

  it("the Python client's log line for a ping it decided carries that request's trace id", async (ctx) => {
    const ready = existsSync(PYTHON)
      ? (await exec(PYTHON, ["-c", "import grpc, google.protobuf"])).code === 0
      : false;
    if (!ready) {
      if (inCI) throw new Error("python3-grpcio / python3-protobuf are not installed");
      ctx.skip();
    }
    const socket = await startTraced();
    const py = ns.spawn(
      PYTHON,
      ["-m", "icmpfwd_client", "reply-all", "-v", "--target", `unix:${socket}`],
      { ...process.env, PYTHONPATH: PYTHON_CLIENT, PYTHONUNBUFFERED: "1" },
    );
    clients.push(py);
    await waitConnected(py, "welcome: session=");
    const r = await ns.exec("ping", ["-n", "-c", "1", "-W", "2", "-p", "c0ffee", "198.18.0.2"]);
    expect(parsePing(r.stdout).received).toBe(1);
    const logged = await waitFor(
      () => /verdict reply: .* seq=1 trace_id=([0-9a-f]{32})/.exec(py.output())?.[1] ?? null,
      { what: "the Python client's verdict line" },
    );
    const req = await waitFor(
      () =>
        spansOf(receiver).find((s) => s.name === "icmpfwd.echo_request" && s.traceId === logged) ??
        null,
      { what: "the request span with the logged trace id", timeoutMs: 10_000 },
    );
    expect(req.attributes["icmpfwd.verdict"]).toBe("reply");
    expect(req.attributes["icmp.sequence"]).toBe(1);
  });

  it("/metrics after N pings has the exact deltas of icmpfwd_requests_total and icmpfwd_netstack_packets_total", async () => {
    serve = await startServe(ns, ["--metrics-listen", "127.0.0.1:9464"]);
    const scrape = async (): Promise<ReturnType<typeof parsePrometheus>> => {
      const r = await ns.exec(process.execPath, [
        "-e",
        "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))",
      ]);
      expect(r.code).toBe(0);
      return parsePrometheus(r.stdout);
    };
    const value = (
      families: ReturnType<typeof parsePrometheus>,
      name: string,
      labels: Record<string, string>,
    ): number => {
      const f = families.find((x) => x.name === name);
      if (f === undefined) throw new Error(`no ${name} in /metrics`);
      const m = f.metrics.find((x) =>
        Object.entries(labels).every(([k, v]) => x.labels?.[k] === v),
      );
      return Number(m?.value ?? 0);
    };
    const keys = {
      noClient: [
        "icmpfwd_requests_total",
        { outcome: "fallthrough", cause: "no_client", family: "ipv4" },
      ],
      echoIn: [
        "icmpfwd_netstack_packets_total",
        { direction: "received", protocol: "icmpv4", type: "echo_request" },
      ],
      echoOut: [
        "icmpfwd_netstack_packets_total",
        { direction: "sent", protocol: "icmpv4", type: "echo_reply" },
      ],
      ipIn: [
        "icmpfwd_netstack_packets_total",
        { direction: "received", protocol: "ipv4", type: "all" },
      ],
    } as const;
    const before = await scrape();
    const N = 7;
    const r = await ns.ping(["-n", "-c", String(N), "-i", "0.05", "-W", "2", "198.18.0.2"]);
    expect(r.received).toBe(N);
    const after = await scrape();
    const delta = (k: keyof typeof keys): number =>
      value(after, keys[k][0], keys[k][1]) - value(before, keys[k][0], keys[k][1]);
    expect({
      noClient: delta("noClient"),
      echoIn: delta("echoIn"),
      echoOut: delta("echoOut"),
      ipIn: delta("ipIn"),
    }).toEqual({ noClient: N, echoIn: N, echoOut: N, ipIn: N });
    const types = Object.fromEntries(after.map((f) => [f.name, f.type]));
    expect(types).toMatchObject({
      icmpfwd_requests_total: "COUNTER",
      icmpfwd_netstack_packets_total: "COUNTER",
      icmpfwd_netstack_drops_total: "COUNTER",
      icmpfwd_rejections_total: "COUNTER",
      icmpfwd_inflight: "GAUGE",
      icmpfwd_sessions: "GAUGE",
    });
  });
});
