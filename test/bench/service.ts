/**
 * The decision service's cost: decisions/s and added latency (per-request hrtime stamps, from
 * the handler call to its settled outcome) through 1 and 4 Connect streams on loopback at batch
 * sizes 1, 16 and 128, next to a bare grpc-js bidi stream carrying the same items at the same
 * batch sizes in the same run. Echo Requests are injected into the netstack through the
 * in-memory link, so this measures the service, not the TUN; clients answer CONSUME (no reply is
 * built). The server side runs in this thread on 127.0.0.1:0, the clients in a worker thread
 * (this machine's second core), bounded in count and time. The code measured is the built code
 * in dist/ (`npm run bench` builds first), as `node dist/main.js` runs it, not the TypeScript
 * sources through tsx, whose per-closure helpers would inflate the service's cost; both the
 * service and the bare stream use the same built protobuf code.
 *
 * `tsx test/bench/service.ts` prints the detailed table; `serviceBench` is the module for
 * `npm run bench` (run.ts), whose rows carry decisions/s as replies/s and the percentiles in the
 * notes. BENCH_SERVICE_COUNT (default 200000 per row) and BENCH_SERVICE_SECONDS (default 5 per
 * row) bound each row.
 */

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isMainThread, Worker, workerData } from "node:worker_threads";
import {
  type ClientDuplexStream,
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServiceError,
} from "@grpc/grpc-js";
import type {
  ClientMessage,
  EchoRequest,
  ServerMessage,
} from "../../src/gen/icmpfwd/v1/forwarder.js";
import type { TransportProtocolHandler } from "../../src/netstack/transport.js";
import type { CallTelemetry } from "../../src/service/call-telemetry.js";
import type { RequestTelemetry } from "../../src/service/request-telemetry.js";
import { v4Echo } from "../helpers/packets.js";
import type { BenchMeasurement, BenchModule } from "./flood.js";
import { printTracingRounds, runTracingRounds, tracingResults } from "./tracing-rounds.js";

export interface ServiceBenchRow {
  name: string;
  mechanism: "service" | "bare";
  streams: number;
  batch: number;
  /** null: closed loop as fast as it goes; otherwise the offered rate. */
  offeredPerSecond: number | null;
  requests: number;
  decided: number;
  /** Requests no session could take when they came (on-overload at once). */
  overloaded: number;
  seconds: number;
  decisionsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** decisions/s over the bare stream's at the same streams and batch (service rows). */
  ratioVsBare: number | null;
  /**
   * CPU time of the server's thread per decision, in µs (null where /proc is missing): the
   * cost, steadier than decisions/s when other processes share the CPU.
   */
  serverCpuUs: number | null;
}

export interface Bounds {
  count: number;
  seconds: number;
}

function boundsFromEnv(): Bounds {
  const num = (key: string, fallback: number): number => {
    const v = Number(process.env[key] ?? fallback);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${key} must be a positive number`);
    return v;
  };
  return {
    count: num("BENCH_SERVICE_COUNT", 200_000),
    seconds: num("BENCH_SERVICE_SECONDS", 5),
  };
}

/** The built modules this benchmark measures, typed by their sources. */
export interface Built {
  config: typeof import("../../src/config.js");
  gen: typeof import("../../src/gen/icmpfwd/v1/forwarder.js");
  channel: typeof import("../../src/link/channel.js");
  components: typeof import("../../src/daemon/components.js");
  transport: typeof import("../../src/netstack/transport.js");
  serve: typeof import("../../src/serve.js");
  service: typeof import("../../src/service/index.js");
  server: typeof import("../../src/service/server.js");
  wire: typeof import("../../src/service/wire.js");
  spans: typeof import("../../src/telemetry/request-spans.js");
  sampling: typeof import("../../src/telemetry/request-sampling.js");
}

const DIST = fileURLToPath(new URL("../../dist/", import.meta.url));

export async function loadBuilt(): Promise<Built> {
  const load = (path: string) => {
    const file = `${DIST}${path}`;
    if (!existsSync(file)) throw new Error(`${file} is missing: run npm run build first`);
    return import(pathToFileURL(file).href);
  };
  return {
    config: await load("config.js"),
    gen: await load("gen/icmpfwd/v1/forwarder.js"),
    channel: await load("link/channel.js"),
    components: await load("daemon/components.js"),
    transport: await load("netstack/transport.js"),
    serve: await load("serve.js"),
    service: await load("service/index.js"),
    server: await load("service/server.js"),
    wire: await load("service/wire.js"),
    spans: await load("telemetry/request-spans.js"),
    sampling: await load("telemetry/request-sampling.js"),
  };
}

/** The IP protocol number of ICMPv4, whose handler the benchmark wraps. */
export const ICMPV4_PROTOCOL_NUMBER = 1;

const now = (): bigint => process.hrtime.bigint();

/** CPU seconds this (the main) thread has used so far, from /proc; null elsewhere. */
function threadCpuSeconds(): number | null {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "latin1");
    // utime and stime, in clock ticks (100 per second), are fields 14 and 15 after the name.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}
const yieldToLoop = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Latency samples (ns) and the load loop both mechanisms share. */
export class Recorder {
  readonly latencies: Float64Array;
  decided = 0;
  /** Requests that got a default action at once (overload): not decisions, not waited for. */
  skipped = 0;
  get settled(): number {
    return this.decided + this.skipped;
  }
  constructor(readonly capacity: number) {
    this.latencies = new Float64Array(capacity);
  }
  reset(): void {
    this.decided = 0;
    this.skipped = 0;
  }

  record(t0: bigint): void {
    if (this.decided < this.capacity) this.latencies[this.decided] = Number(now() - t0);
    this.decided++;
    this.wake();
  }

  skip(): void {
    this.skipped++;
    this.wake();
  }

  private waiter: (() => void) | null = null;

  /** Resolves at the next decision (or after 1 ms), so the load loop never spins. */
  progress(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve();
      }, 1);
      this.waiter = () => {
        clearTimeout(t);
        this.waiter = null;
        // Let the rest of this batch of decisions land before offering more.
        setImmediate(resolve);
      };
    });
  }

  private wake(): void {
    this.waiter?.();
  }
  percentiles(): { p50: number; p99: number; p999: number } {
    const n = Math.min(this.decided, this.capacity);
    const s = this.latencies.slice(0, n).sort();
    const at = (q: number) => (n === 0 ? 0 : s[Math.min(n - 1, Math.floor(q * n))] / 1e6);
    return { p50: at(0.5), p99: at(0.99), p999: at(0.999) };
  }
}

/**
 * Offers `count` requests in groups of `batch`: closed loop (at most `window` undecided) when
 * `rate` is null, otherwise paced at `rate` per second; never while `ready()` says the streams
 * want to drain (both mechanisms honour grpc-js backpressure). Stops at the bounds. It waits
 * for decisions (closed loop) or a 1 ms timer (paced) rather than spinning, so it leaves the
 * CPU to the server and the clients.
 */
export async function drive(
  offer: (n: number) => void,
  ready: () => boolean,
  rec: Recorder,
  o: { count: number; seconds: number; batch: number; window: number; rate: number | null },
): Promise<{ offered: number; seconds: number }> {
  const start = now();
  const until = start + BigInt(Math.round(o.seconds * 1e9));
  let offered = 0;
  while (now() < until && (offered < o.count || rec.settled < offered)) {
    if (offered < o.count) {
      let room: number;
      if (o.rate === null) room = o.window - (offered - rec.settled);
      else room = Math.floor((Number(now() - start) / 1e9) * o.rate) - offered;
      while (room > 0 && offered < o.count && ready()) {
        const n = Math.min(o.batch, room, o.count - offered);
        offer(n);
        offered += n;
        room -= n;
      }
    }
    if (o.rate === null) await rec.progress();
    else await sleep(1);
  }
  return { offered, seconds: Number(now() - start) / 1e9 };
}

export interface ClientsJob {
  role: "bench-clients";
  address: string;
  streams: number;
  /** Say Hello (the service) or just open the stream (the bare server). */
  hello: boolean;
  /** The verdict every request gets (default CONSUME). */
  action?: "consume" | "reply";
  /** Hello's max_in_flight (default 2^20). */
  maxInFlight?: number;
  /** Say Hello, then stop reading the stream and never answer (a stalled client). */
  stall?: boolean;
}

/**
 * The policy clients run in a worker thread, so the server's thread (the one measured) does
 * only the server's work; each answers every batch at once with CONSUME verdicts. They read
 * and write raw protobuf bytes (only each event's request_id is read; a verdict batch is a few
 * varints): a client decoding every event into generated objects spent more CPU than the
 * server it measured and its garbage collections showed up as the stream's latency.
 */
async function runClients(job: ClientsJob): Promise<void> {
  const { gen, wire } = await loadBuilt();
  const { ClientMessage, EchoForwarderService, Mode } = gen;
  const Client = makeGenericClientConstructor(
    {
      connect: {
        ...EchoForwarderService.connect,
        requestSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    "EchoForwarder",
  );
  const action = job.action === "reply" ? gen.Action.ACTION_REPLY : gen.Action.ACTION_CONSUME;
  for (let i = 0; i < job.streams; i++) {
    const client = new Client(job.address, credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    });
    const call = (client as unknown as { connect(): ClientDuplexStream<Buffer, Buffer> }).connect();
    if (job.stall) call.pause();
    else decideAll(wire, call, action);
    const first: ClientMessage = job.hello
      ? {
          message: {
            $case: "hello",
            value: {
              protocolVersion: 1,
              clientName: `bench-${i}`,
              mode: Mode.MODE_DECIDE,
              filter: undefined,
              maxInFlight: job.maxInFlight ?? 1 << 20,
              payloadBytes: 0,
            },
          },
        }
      : { message: { $case: "drain", value: {} } };
    call.write(Buffer.from(ClientMessage.encode(first).finish()));
  }
}

/** Field tags (field number << 3 | wire type) the bench clients read and write. */
const TAG = {
  serverMessageRequests: (2 << 3) | 2,
  batchRequests: (1 << 3) | 2,
  requestId: 1 << 3,
  clientMessageVerdicts: (2 << 3) | 2,
  verdictBatchVerdicts: (1 << 3) | 2,
  verdictAction: 2 << 3,
} as const;

/**
 * The request ids of a ServerMessage carrying an EchoRequestBatch (field 2 → repeated field 1 →
 * request_id, field 1); empty for any other message.
 */
function requestIds(wire: Built["wire"], m: Uint8Array): number[] {
  const ids: number[] = [];
  if (m[0] !== TAG.serverMessageRequests) return ids;
  const r = new wire.ProtoReader(m, 1);
  const end = r.lengthEnd();
  while (r.pos < end) {
    if (r.byte() !== TAG.batchRequests) {
      r.varint(); // batch field 2, observer_drops
      continue;
    }
    const eventEnd = r.lengthEnd();
    // request_id is the event's first field (the service and generated code write it first).
    if (r.byte() === TAG.requestId) ids.push(r.varint());
    r.pos = eventEnd;
  }
  return ids;
}

/** ClientMessage{verdicts: VerdictBatch{verdicts: [{request_id, action}]}} as bytes. */
function verdictBytes(wire: Built["wire"], ids: readonly number[], action: number): Buffer {
  let body = 0;
  for (const id of ids) body += 2 + (1 + wire.varintSize(id)) + 2;
  const out = Buffer.allocUnsafe(1 + wire.varintSize(body) + body);
  out[0] = TAG.clientMessageVerdicts;
  let i = wire.writeVarint(out, 1, body);
  for (const id of ids) {
    out[i++] = TAG.verdictBatchVerdicts;
    out[i++] = 1 + wire.varintSize(id) + 2;
    out[i++] = TAG.requestId;
    i = wire.writeVarint(out, i, id);
    out[i++] = TAG.verdictAction;
    out[i++] = action;
  }
  return out;
}

/** Starts the clients in a worker (which loads this file through tsx). */
/** `inner`, with each request's receive-to-outcome time recorded in `rec`. */
export function timedHandler(
  lib: Built,
  inner: TransportProtocolHandler,
  rec: Recorder,
): TransportProtocolHandler {
  return (id, pkt) => {
    const t0 = now();
    const r = inner(id, pkt);
    if (typeof r === "boolean") {
      rec.skip();
      return r;
    }
    if (r instanceof lib.transport.Decision) {
      r.onSettled(() => rec.record(t0));
      return r;
    }
    return r.then((v) => {
      rec.record(t0);
      return v;
    });
  };
}

export function startClients(job: Omit<ClientsJob, "role">): Worker {
  const src = `import("tsx/esm/api").then((api) => { api.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  // The clients' own young generation stays at Node's usual size: --max-semi-space-size is
  // process-wide and is meant for the service's thread; a worker with 128 MB of young
  // generation made the process's RSS swing by tens of MB (the memory rows).
  const w = new Worker(src, {
    eval: true,
    workerData: { role: "bench-clients", ...job },
    resourceLimits: { maxYoungGenerationSizeMb: 32 },
  });
  w.on("error", (e) => console.error("bench clients:", e));
  return w;
}

function decideAll(
  wire: Built["wire"],
  call: ClientDuplexStream<Buffer, Buffer>,
  action: number,
): void {
  call.on("data", (m: Buffer) => {
    const ids = requestIds(wire, m);
    if (ids.length > 0) call.write(verdictBytes(wire, ids, action));
  });
  call.on("error", () => {});
}

/** Packets of 256 flows, so affinity spreads them over 4 sessions. */
export const PACKETS = Array.from({ length: 1024 }, (_, i) =>
  v4Echo({ ident: i % 256, sequence: i }),
);

/**
 * Injects the next `n` of PACKETS into `link`, each a fresh copy (as a TUN read hands over new
 * buffers: the netstack rewrites replies in place).
 */
export function packetInjector(link: {
  inject(...packets: Uint8Array[]): void;
}): (n: number) => void {
  let next = 0;
  return (n) => {
    const group: Uint8Array[] = [];
    for (let k = 0; k < n; k++) group.push(PACKETS[next++ % PACKETS.length].slice());
    link.inject(...group);
  };
}

export type Measured = Omit<ServiceBenchRow, "ratioVsBare" | "name">;

/** Warms up (JIT, connections), then measures. */
async function measure(
  mechanism: "service" | "bare",
  offer: (n: number) => void,
  ready: () => boolean,
  rec: Recorder,
  streams: number,
  batch: number,
  rate: number | null,
  b: Bounds,
): Promise<Measured> {
  // The service spreads what arrives in one tick over its sessions: offer it a batch for each
  // stream at once, so every message carries `batch` events, as the bare stream's do. Both get
  // the same window (8 batches per stream in flight): with 4 streams the bare stream's was a
  // quarter of the service's, which then queued 4× deeper (latency) and kept 4× more requests
  // alive (GC) for the same throughput.
  const group = mechanism === "service" ? batch * streams : batch;
  const o = { batch: group, window: Math.max(256, 8 * batch * streams), rate };
  const warm = await drive(offer, ready, rec, {
    ...o,
    count: Math.min(20_000, Math.ceil(b.count / 5)),
    seconds: 2,
  });
  // Warm-up requests still undecided would count in the measurement: let them settle.
  const settled = Date.now() + 5000;
  while (rec.settled < warm.offered && Date.now() < settled) await yieldToLoop();
  rec.reset();
  const cpu0 = threadCpuSeconds();
  const r = await drive(offer, ready, rec, { ...o, ...b });
  const cpu1 = threadCpuSeconds();
  const p = rec.percentiles();
  return {
    mechanism,
    streams,
    batch,
    offeredPerSecond: rate,
    requests: r.offered,
    decided: rec.decided,
    overloaded: rec.skipped,
    seconds: r.seconds,
    decisionsPerSecond: rec.decided / r.seconds,
    p50Ms: p.p50,
    p99Ms: p.p99,
    p999Ms: p.p999,
    serverCpuUs:
      cpu0 === null || cpu1 === null || rec.decided === 0
        ? null
        : ((cpu1 - cpu0) / rec.decided) * 1e6,
  };
}

/** Tracing as the daemon sets it up (tracing-row.ts), handed to a service row. */
export interface BenchTracing {
  telemetry: RequestTelemetry;
  /** The gRPC calls' spans (the session's Connect span), as the daemon makes them. */
  calls: CallTelemetry;
  provider: { shutdown(): Promise<void> };
}

export async function serviceRow(
  lib: Built,
  streams: number,
  batch: number,
  rate: number | null,
  b: Bounds,
  tracing: BenchTracing | null = null,
): Promise<Measured> {
  const link = new lib.channel.ChannelEndpoint();
  const stack = lib.serve.buildStack(lib.config.resolveConfig({}), link);
  const service = await lib.service.EchoService.start({
    ...lib.components.serviceOptionsOf(lib.config.resolveConfig({})),
    listen: "127.0.0.1:0",
    deadlineMs: 10_000,
    policy: lib.service.FAIL_OPEN,
    limits: { maxBatch: batch, maxInFlightCap: 1 << 20 },
    telemetry: tracing?.telemetry,
    calls: tracing?.calls,
  });
  const rec = new Recorder(b.count);
  stack.setTransportProtocolHandler(
    ICMPV4_PROTOCOL_NUMBER,
    timedHandler(lib, service.forwarder.handlePacket, rec),
  );
  const clients = startClients({ address: service.address, streams, hello: true });
  try {
    while (service.dispatcher.sessions.length < streams) await yieldToLoop();
    const offer = packetInjector(link);
    // A session whose write() said wait takes nothing: offer only while one can.
    const ready = () => service.dispatcher.sessions.some((x) => x.canTake());
    const m = await measure("service", offer, ready, rec, streams, batch, rate, b);
    const c = service.counters();
    if (c["service.outcomes.fallthrough.noClient"] !== 0) throw new Error("no client for some");
    return m;
  } finally {
    await clients.terminate();
    await service.close();
    stack.close();
    await tracing?.provider.shutdown();
  }
}

/** The same items over a plain grpc-js bidi stream: generated objects out, verdicts back. */
async function bareRow(
  lib: Built,
  streams: number,
  batch: number,
  rate: number | null,
  b: Bounds,
): Promise<Measured> {
  const { Family, EchoForwarderService } = lib.gen;
  const { protoTimeOfMs } = lib.wire;
  const rec = new Recorder(b.count);
  const sent = new Map<bigint, bigint>();
  const calls: ServerDuplexStream<ClientMessage, ServerMessage>[] = [];
  const server = new Server(lib.server.DEFAULT_SERVER_OPTIONS);
  server.addService(EchoForwarderService, {
    connect(call: ServerDuplexStream<ClientMessage, ServerMessage>) {
      calls.push(call);
      call.on("data", (m: ClientMessage) => {
        if (m.message?.$case !== "verdicts") return;
        for (const v of m.message.value.verdicts) {
          const t0 = sent.get(v.requestId);
          if (t0 === undefined) continue;
          sent.delete(v.requestId);
          rec.record(t0);
        }
      });
      call.on("error", () => {});
    },
    getStats: (_c: unknown, done: (e: ServiceError | null) => void) => done(null),
    watchStats: () => {},
    listSessions: (_c: unknown, done: (e: ServiceError | null) => void) => done(null),
    ping: () => {},
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const clients = startClients({ address: `127.0.0.1:${port}`, streams, hello: false });
  try {
    while (calls.length < streams) await yieldToLoop();
    let id = 0n;
    let turn = 0;
    const source = Buffer.from([198, 18, 0, 1]);
    const destination = Buffer.from([198, 18, 0, 2]);
    const offer = (n: number): void => {
      const requests: EchoRequest[] = [];
      const t0 = now();
      const received = performance.now();
      for (let k = 0; k < n; k++) {
        id++;
        sent.set(id, t0);
        requests.push({
          requestId: id,
          family: Family.FAMILY_IPV4,
          nic: 1,
          source,
          destination,
          ident: Number(id & 0xffn),
          sequence: Number(id & 0xffffn),
          ttl: 64,
          tos: 0,
          localAddressTemporary: false,
          payload: Buffer.alloc(0),
          payloadLength: 56,
          receivedAt: protoTimeOfMs(Date.now()),
          deadline: protoTimeOfMs(Date.now() + 10_000),
          budget: protoTimeOfMs(10_000 - (performance.now() - received)),
          traceparent: "",
        });
      }
      calls[turn++ % calls.length].write({
        message: { $case: "requests", value: { requests, observerDrops: 0n } },
      });
    };
    const ready = () => !calls[turn % calls.length].writableNeedDrain;
    return await measure("bare", offer, ready, rec, streams, batch, rate, b);
  } finally {
    await clients.terminate();
    server.forceShutdown();
  }
}

/** Every row: throughput (closed loop) per streams × batch, then 10,000 requests/s paced. */
export async function runServiceBench(b: Bounds = boundsFromEnv()): Promise<ServiceBenchRow[]> {
  const lib = await loadBuilt();
  const rows: ServiceBenchRow[] = [];
  const name = (m: string, streams: number, batch: number, rate: number | null) =>
    `${m} ${streams} stream${streams > 1 ? "s" : ""}, batch ${batch}${rate === null ? "" : `, ${rate}/s`}`;
  const cases: [number, number, number | null][] = [
    [1, 1, null],
    [1, 16, null],
    [1, 128, null],
    [4, 1, null],
    [4, 16, null],
    [4, 128, null],
    // Added latency, open loop (offered at a fixed rate whatever the decisions do): 1k, 10k and
    // 50k requests/s, in groups of at most 16 per 1 ms loop turn.
    [1, 16, 1_000],
    [1, 16, 10_000],
    [1, 16, 50_000],
  ];
  // BENCH_SERVICE_ONLY=1x128 runs only the cases with 1 stream and batch 128 (profiling).
  const only = process.env.BENCH_SERVICE_ONLY;
  for (const [streams, batch, rate] of cases) {
    if (only !== undefined && only !== `${streams}x${batch}${rate === null ? "" : `@${rate}`}`)
      continue;
    const paced = rate === null ? b : { count: Math.min(b.count, rate * 3), seconds: b.seconds };
    const bare = await bareRow(lib, streams, batch, rate, paced);
    const svc = await serviceRow(lib, streams, batch, rate, paced);
    rows.push({ ...bare, name: name("bare", streams, batch, rate), ratioVsBare: null });
    rows.push({
      ...svc,
      name: name("service", streams, batch, rate),
      ratioVsBare: svc.decisionsPerSecond / bare.decisionsPerSecond,
    });
  }
  // What tracing costs: off / 1 % / 100 % sampled at 1 stream × 16, each row a process of its
  // own with tracing as the daemon sets it up, in interleaved rounds (tracing-rounds.ts).
  if (only === undefined || only === "tracing") {
    const bare = await bareRow(lib, 1, 16, null, b);
    rows.push({ ...bare, name: "bare 1 stream, batch 16 (tracing rows)", ratioVsBare: null });
    const t = await runTracingRounds(b);
    tracingResults.push(t);
    printTracingRounds(t);
    for (const r of t.rows)
      rows.push({
        ...r,
        ratioVsBare: r.decisionsPerSecond / bare.decisionsPerSecond,
      });
  }
  return rows;
}

function fmtRate(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}

export function printServiceTable(rows: readonly ServiceBenchRow[]): void {
  const header = [
    "row",
    "decisions/s",
    "p50",
    "p99",
    "p99.9",
    "ratio vs bare",
    "cpu/decision",
    "decided",
    "overload",
  ];
  const body = rows.map((r) => [
    r.name,
    fmtRate(r.decisionsPerSecond),
    `${r.p50Ms.toFixed(3)} ms`,
    `${r.p99Ms.toFixed(3)} ms`,
    `${r.p999Ms.toFixed(3)} ms`,
    r.ratioVsBare === null ? "–" : r.ratioVsBare.toFixed(2),
    r.serverCpuUs === null ? "–" : `${r.serverCpuUs.toFixed(1)} µs`,
    `${r.decided}/${r.requests}`,
    String(r.overloaded),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of body) console.log(line(row));
}

/** The last run's rows, for run.ts's targets and JSON. */
export const serviceResults: ServiceBenchRow[] = [];

/** For run.ts: decisions/s in the replies/s column; percentiles and the ratio in the notes. */
export const serviceBench: BenchModule = {
  name: "service",
  async run(): Promise<BenchMeasurement[]> {
    const rows = await runServiceBench();
    serviceResults.push(...rows);
    printServiceTable(rows);
    return rows.map((r) => ({
      mechanism: r.name,
      transmitted: r.requests,
      received: r.decided,
      rttAvgMs: null,
      wallSeconds: r.seconds,
      repliesPerSecond: r.decisionsPerSecond,
      cpuSeconds: r.serverCpuUs === null ? null : (r.serverCpuUs * r.decided) / 1e6,
      cpuWhat: "server thread",
      notes: `decisions/s; added latency p50 ${r.p50Ms.toFixed(3)} / p99 ${r.p99Ms.toFixed(3)} / p99.9 ${r.p999Ms.toFixed(3)} ms${r.ratioVsBare === null ? "" : `; ${r.ratioVsBare.toFixed(2)}× bare`}`,
    }));
  },
};

if (!isMainThread && (workerData as ClientsJob | null)?.role === "bench-clients") {
  runClients(workerData as ClientsJob);
} else if (isMainThread && import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  runServiceBench().then(
    (rows) => {
      printServiceTable(rows);
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
