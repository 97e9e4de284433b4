/**
 * The TypeScript policy client (clients/ts): batching, backoff, handler errors and abort against
 * a scripted grpc-js server, and decisions against the real service in process.
 */
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  backoffDelay,
  connect,
  formatAddress,
  type LogLevel,
  type PolicyClient,
  syntheticReply,
  toPolicyRequest,
  traceIdOf,
} from "../../../clients/ts/src/index.js";
import { policy, tokenBuckets } from "../../../clients/ts/src/policies.js";
import {
  isMeasurementPing,
  MEASUREMENT_MARKER,
  type PingResult,
  parsePingRtt,
  RttMeter,
} from "../../../clients/ts/src/rtt.js";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { sleep, waitFor } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, startHarness } from "../../integration/service/harness.js";
import { FakeService, echoRequest as request } from "./ts-fake-service.js";

const TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/** A PolicyRequest as the client hands it to a handler. */
const toRequest = (id: number) => toPolicyRequest(request(id));

const logs: { level: LogLevel; msg: string; fields?: Record<string, unknown> }[] = [];
const onLog = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
  logs.push({ level, msg, fields });
};

let fake: FakeService | null = null;
let client: PolicyClient | null = null;
let harness: Harness | null = null;
afterEach(async () => {
  await client?.drain().catch(() => {});
  client = null;
  fake?.stop();
  fake = null;
  await harness?.close();
  harness = null;
  logs.length = 0;
});

async function fakeService(): Promise<FakeService> {
  fake = new FakeService();
  await fake.start();
  return fake;
}

describe("helpers", () => {
  it("formats addresses, trace ids and backoff delays within their jitter bounds", () => {
    expect(formatAddress(Uint8Array.of(198, 18, 0, 2))).toBe("198.18.0.2");
    const v6 = new Uint8Array(16);
    v6[0] = 0xfd;
    v6[15] = 2;
    v6[3] = 1;
    expect(formatAddress(v6)).toBe("fd00:1::2");
    expect(formatAddress(new Uint8Array(16))).toBe("::");
    expect(traceIdOf(TRACE)).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(traceIdOf("")).toBeNull();

    const o = { initialMs: 100, maxMs: 2000, multiplier: 2, jitter: 0.25 };
    for (let attempt = 0; attempt < 10; attempt++) {
      const base = Math.min(2000, 100 * 2 ** attempt);
      expect(backoffDelay(attempt, o, () => 0)).toBeCloseTo(base * 0.75);
      expect(backoffDelay(attempt, o, () => 0.999999)).toBeCloseTo(base * 1.25, 2);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, o);
        expect(d).toBeGreaterThanOrEqual(base * 0.75);
        expect(d).toBeLessThanOrEqual(base * 1.25);
      }
    }
    // Jittered: not every client waits the same.
    const ds = new Set(Array.from({ length: 20 }, () => backoffDelay(3, o)));
    expect(ds.size).toBeGreaterThan(1);
  });

  it("token buckets refill per source", () => {
    let now = 0;
    const b = tokenBuckets(2, 3, () => now);
    expect([1, 2, 3, 4].map(() => b.take("a"))).toEqual([true, true, true, false]);
    expect(b.take("b")).toBe(true);
    now += 500;
    expect(b.take("a")).toBe(true);
    expect(b.take("a")).toBe(false);
  });
});

/** A scripted `ping`: each call waits for the test to settle it. */
function scriptedPing() {
  const calls: { args: string[]; settle: (r: PingResult) => void }[] = [];
  const run = (args: string[]) =>
    new Promise<PingResult>((resolve) => calls.push({ args, settle: resolve }));
  const ok = (ms: number): PingResult => ({
    code: 0,
    stdout: `PING x 56(84) bytes of data.\n64 bytes from x: icmp_seq=1 ttl=64 time=${ms} ms\n`,
    stderr: "",
  });
  return { calls, run, ok };
}

describe("proxy-latency's measured RTT (clients/ts/src/rtt.ts)", () => {
  it("parses the RTT of iputils ping -c 1, and nothing from a ping with no reply", () => {
    expect(
      parsePingRtt(
        "PING 198.18.0.2 (198.18.0.2) 56(84) bytes of data.\n64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=0.043 ms\n",
      ),
    ).toBe(0.043);
    expect(parsePingRtt("rtt min/avg/max/mdev = 12.5/12.5/12.5/0.000 ms")).toBe(12.5);
    expect(parsePingRtt("1 packets transmitted, 0 received, 100% packet loss, time 0ms")).toBe(
      null,
    );
  });

  it("pings the destination with ping -c 1 -n -W 1 and the loop marker, by family", async () => {
    const p = scriptedPing();
    const m = new RttMeter({ run: p.run });
    const v4 = m.measure("198.18.0.2");
    const v6 = m.measure("fd00:1::2");
    await waitFor(() => p.calls.length === 2, { what: "2 pings" });
    const marker = MEASUREMENT_MARKER.toString("hex");
    expect(p.calls.map((c) => c.args)).toEqual([
      ["-4", "-c", "1", "-n", "-W", "1", "-p", marker, "198.18.0.2"],
      ["-6", "-c", "1", "-n", "-W", "1", "-p", marker, "fd00:1::2"],
    ]);
    for (const c of p.calls) c.settle(p.ok(3));
    expect([await v4, await v6]).toEqual([3, 3]);
  });

  it("shares one measurement per destination and caches it for cacheMs", async () => {
    let now = 0;
    const p = scriptedPing();
    const m = new RttMeter({ run: p.run, cacheMs: 1000, now: () => now });
    const a = [m.measure("198.18.0.2"), m.measure("198.18.0.2"), m.measure("198.18.0.2")];
    await waitFor(() => p.calls.length === 1, { what: "1 ping" });
    p.calls[0].settle(p.ok(7.5));
    expect(await Promise.all(a)).toEqual([7.5, 7.5, 7.5]);
    now = 999;
    expect(await m.measure("198.18.0.2")).toBe(7.5);
    expect(p.calls).toHaveLength(1);
    now = 1000;
    const again = m.measure("198.18.0.2");
    await waitFor(() => p.calls.length === 2, { what: "a second ping after the cache expired" });
    p.calls[1].settle(p.ok(9));
    expect(await again).toBe(9);
    expect(m.stats).toMatchObject({ pings: 2, shared: 3, failures: 0 });
  });

  it("runs at most maxConcurrent pings at once and refuses past maxQueued", async () => {
    const p = scriptedPing();
    const m = new RttMeter({ run: p.run, maxConcurrent: 2, maxQueued: 1 });
    const r = ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map((d) => m.measure(d));
    expect(await m.measure("198.18.0.14")).toBeNull();
    expect(m.stats.overflows).toBe(1);
    await waitFor(() => p.calls.length === 2, { what: "2 pings" });
    await sleep(20);
    expect(p.calls).toHaveLength(2);
    p.calls[0].settle(p.ok(1));
    await waitFor(() => p.calls.length === 3, { what: "the queued ping" });
    p.calls[1].settle(p.ok(2));
    p.calls[2].settle(p.ok(3));
    expect(await Promise.all(r)).toEqual([1, 2, 3]);
  });

  it("a failed ping yields null (the fixed-delay fallback), is logged and cached", async () => {
    const p = scriptedPing();
    const warn: unknown[] = [];
    const m = new RttMeter({ run: p.run, onLog: (_l, msg, f) => warn.push({ msg, ...f }) });
    const r = m.measure("198.18.0.9");
    await waitFor(() => p.calls.length === 1, { what: "1 ping" });
    p.calls[0].settle({ code: 1, stdout: "1 packets transmitted, 0 received", stderr: "" });
    expect(await r).toBeNull();
    expect(await m.measure("198.18.0.9")).toBeNull();
    expect(p.calls).toHaveLength(1);
    expect(m.stats.failures).toBe(1);
    expect(warn).toEqual([
      {
        msg: "measurement ping failed; using the fixed delay",
        destination: "198.18.0.9",
        error: "1 packets transmitted, 0 received",
      },
    ]);
    const broken = new RttMeter({ run: () => Promise.reject(new Error("spawn ping ENOENT")) });
    expect(await broken.measure("198.18.0.9")).toBeNull();
  });

  it("proxy-latency --measure: the synthetic reply goes out one measured RTT after the request", async () => {
    let now = 0;
    const p = scriptedPing();
    const pl = policy("proxy-latency", { measure: { run: p.run }, delayMs: 500, now: () => now });
    expect(pl.payloadBytes).toBe(64);
    const req = { ...toRequest(1), destination: "198.18.0.2" };
    const d = await pl.handler(req);
    expect(typeof d === "object" && d.action).toBe("consume");
    const delay = typeof d === "object" ? d.syntheticReply?.delayMs : undefined;
    await waitFor(() => p.calls.length === 1, { what: "the measurement" });
    now = 30; // the measurement took 30 ms of a 40 ms RTT: 10 ms left
    p.calls[0].settle(p.ok(40));
    expect(await delay).toBe(10);
    // Cached: the next request waits the whole RTT.
    const d2 = await pl.handler(req);
    expect(await (typeof d2 === "object" ? d2.syntheticReply?.delayMs : undefined)).toBe(40);
    // A failure: the fixed delay.
    const f = await pl.handler({ ...req, destination: "198.18.0.3" });
    await waitFor(() => p.calls.length === 2, { what: "the second measurement" });
    p.calls[1].settle({ code: 2, stdout: "", stderr: "ping: connect: Network is unreachable" });
    expect(await (typeof f === "object" ? f.syntheticReply?.delayMs : undefined)).toBe(500);
  });

  it("proxy-latency --measure answers its own looped measurement ping with reply and discards that result", async () => {
    const p = scriptedPing();
    const pl = policy("proxy-latency", { measure: { run: p.run }, delayMs: 250, now: () => 0 });
    const req = { ...toRequest(1), destination: "198.18.0.2" };
    const d = await pl.handler(req);
    await waitFor(() => p.calls.length === 1, { what: "the measurement" });
    // The measurement ping comes back as a request: iputils puts a timestamp, then the pattern.
    const payload = Buffer.concat([Buffer.alloc(16, 0xee), MEASUREMENT_MARKER, Buffer.alloc(24)]);
    expect(isMeasurementPing(payload)).toBe(true);
    expect(isMeasurementPing(Buffer.alloc(56))).toBe(false);
    expect(await pl.handler({ ...req, payload })).toBe("reply");
    p.calls[0].settle(p.ok(0.05));
    expect(await (typeof d === "object" ? d.syntheticReply?.delayMs : undefined)).toBe(250);
    expect(pl.meter?.stats).toMatchObject({ pings: 1, loops: 1, failures: 0 });
  });
});

describe("the client against a scripted service", () => {
  it("answers one received batch with one VerdictBatch, and async answers per microtask", async () => {
    const f = await fakeService();
    client = connect({
      target: f.address,
      onLog,
      handler: (r) =>
        r.sequence > 100
          ? Promise.resolve(r.sequence % 2 === 0 ? "reply" : "consume")
          : r.sequence % 2 === 0
            ? "reply"
            : { action: "consume", applyToFlowMs: 50 },
    });
    const s = await f.stream();
    const hello = s.received[0].message;
    expect(hello?.$case).toBe("hello");
    await waitFor(() => client?.connected, { what: "connected" });
    f.send(
      0,
      [1, 2, 3, 4, 5].map((i) => request(i)),
    );
    await waitFor(() => f.batches().length === 1, { what: "one batch" });
    expect(f.batches()[0].map((v) => [Number(v.requestId), v.action, v.applyToFlowMs])).toEqual([
      [1, Action.ACTION_CONSUME, 50],
      [2, Action.ACTION_REPLY, 0],
      [3, Action.ACTION_CONSUME, 50],
      [4, Action.ACTION_REPLY, 0],
      [5, Action.ACTION_CONSUME, 50],
    ]);
    f.send(
      0,
      [101, 102, 103].map((i) => request(i)),
    );
    await waitFor(() => f.batches().length === 2, { what: "the async batch" });
    await sleep(20);
    expect(f.batches()).toHaveLength(2);
    expect(f.batches()[1].map((v) => Number(v.requestId))).toEqual([101, 102, 103]);
    expect(client.stats.decided).toEqual({ reply: 3, consume: 5, fallthrough: 0 });
  });

  it("a throwing or rejecting handler decides fallthrough and logs the trace id, with no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const f = await fakeService();
      client = connect({
        target: f.address,
        onLog,
        handler: (r) => {
          if (r.sequence === 1) throw new Error("sync boom");
          if (r.sequence === 2) return Promise.reject(new Error("async boom"));
          if (r.sequence === 3) return "nonsense" as "reply";
          return "reply";
        },
      });
      await f.stream();
      await waitFor(() => client?.connected, { what: "connected" });
      f.send(
        0,
        [1, 2, 3, 4].map((i) => request(i)),
      );
      await waitFor(() => f.batches().flat().length === 4, { what: "4 verdicts" });
      const byId = new Map(
        f
          .batches()
          .flat()
          .map((v) => [Number(v.requestId), v.action]),
      );
      expect(byId.get(1)).toBe(Action.ACTION_FALLTHROUGH);
      expect(byId.get(2)).toBe(Action.ACTION_FALLTHROUGH);
      expect(byId.get(3)).toBe(Action.ACTION_FALLTHROUGH);
      expect(byId.get(4)).toBe(Action.ACTION_REPLY);
      expect(client.stats.errors).toBe(3);
      const errors = logs.filter((l) => l.level === "error");
      expect(errors).toHaveLength(3);
      for (const e of errors) expect(e.fields?.trace_id).toBe("0af7651916cd43dd8448eb211c80319c");
      expect(errors.map((e) => e.fields?.error)).toContain("async boom");
      await sleep(20);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("abort sends Drain, waits for in-flight answers, then ends and stops reconnecting", async () => {
    const f = await fakeService();
    const ac = new AbortController();
    let release: (() => void) | null = null;
    const c = connect({
      target: f.address,
      onLog,
      signal: ac.signal,
      handler: () =>
        new Promise((resolve) => {
          release = () => resolve("reply");
        }),
    });
    client = c;
    await f.stream();
    await waitFor(() => c.connected, { what: "connected" });
    f.send(0, [request(9)]);
    await waitFor(() => release !== null, { what: "the handler" });
    ac.abort();
    await waitFor(() => f.calls[0].received.some((m) => m.message?.$case === "drain"), {
      what: "Drain",
    });
    expect(f.batches()).toHaveLength(0);
    release!();
    await c.done;
    // The fake ends the stream on Drain, so the late verdict is not sent; nothing reconnects.
    await sleep(50);
    expect(f.calls).toHaveLength(1);
    expect(c.connected).toBe(false);
  });

  it("abort sends the promised synthetic replies before Drain", async () => {
    const f = await fakeService();
    const ac = new AbortController();
    const c = connect({
      target: f.address,
      onLog,
      signal: ac.signal,
      handler: (r) => syntheticReply(r, { delayMs: 80 }),
    });
    client = c;
    await f.stream();
    await waitFor(() => c.connected, { what: "connected" });
    f.send(0, [request(4)]);
    await waitFor(() => f.batches().length === 1, { what: "the verdict" });
    ac.abort();
    await c.done;
    expect(f.calls[0].received.map((m) => m.message?.$case)).toEqual([
      "hello",
      "verdicts",
      "syntheticReply",
      "drain",
    ]);
  });

  it("reconnects after the stream fails, with backoff", async () => {
    const f = await fakeService();
    client = connect({
      target: f.address,
      onLog,
      backoff: { initialMs: 10, maxMs: 50 },
      handler: () => "reply",
    });
    await f.stream(0);
    f.calls[0].call.emit("error", { code: grpcStatus.UNAVAILABLE, details: "restarting" });
    await f.stream(1);
    await waitFor(() => client?.stats.sessions === 2, { what: "second Welcome" });
    expect(logs.some((l) => l.msg === "disconnected; reconnecting")).toBe(true);
  });

  it("stops with a clear error when authentication fails", async () => {
    const f = await fakeService();
    f.refuse = { code: grpcStatus.UNAUTHENTICATED, details: "missing or bad token" };
    const c = connect({ target: f.address, onLog, handler: () => "reply" });
    await expect(c.done).rejects.toThrow(/authentication failed.*UNAUTHENTICATED/);
    expect(f.calls).toHaveLength(1);
  });
});

describe("the client against the real service (in process)", () => {
  it("even-reply decides each request and the counters agree", async () => {
    const h = await startHarness();
    harness = h;
    client = connect({
      target: h.service.address,
      onLog,
      handler: policy("even-reply").handler,
    });
    await waitFor(() => client?.connected, { what: "connected" });
    for (let seq = 1; seq <= 6; seq++) h.link.inject(v4Echo({ sequence: seq }));
    await waitFor(() => h.counter("service.outcomes.consume.verdict") === 3, {
      what: "3 consumed",
    });
    expect(h.counter("service.outcomes.reply.verdict")).toBe(3);
    expect(h.takeReplies()).toHaveLength(3);
    expect(client.stats.decided).toEqual({ reply: 3, consume: 3, fallthrough: 0 });
  });

  it("syntheticReply consumes, then the service sends the reply after the delay", async () => {
    const h = await startHarness();
    harness = h;
    client = connect({
      target: h.service.address,
      onLog,
      handler: (r) => syntheticReply(r, { delayMs: 30 }),
    });
    await waitFor(() => client?.connected, { what: "connected" });
    h.link.inject(v4Echo({ sequence: 1 }));
    await waitFor(() => h.counter("service.outcomes.consume.verdict") === 1, {
      what: "consumed",
    });
    await waitFor(() => h.counter("service.synthetic.sent") === 1, { what: "synthetic reply" });
    expect(h.takeReplies()).toHaveLength(1);
  });

  it("syntheticReply with a Promise delay sends the reply only once it settles", async () => {
    const h = await startHarness();
    harness = h;
    let release: (ms: number) => void = () => {};
    const gate = new Promise<number>((resolve) => {
      release = resolve;
    });
    client = connect({
      target: h.service.address,
      onLog,
      handler: (r) => syntheticReply(r, { delayMs: gate }),
    });
    await waitFor(() => client?.connected, { what: "connected" });
    h.link.inject(v4Echo({ sequence: 1 }));
    await waitFor(() => h.counter("service.outcomes.consume.verdict") === 1, {
      what: "consumed",
    });
    await sleep(50);
    expect(h.counter("service.synthetic.sent")).toBe(0);
    release(5);
    await waitFor(() => h.counter("service.synthetic.sent") === 1, { what: "synthetic reply" });
    expect(h.takeReplies()).toHaveLength(1);
  });

  it("drain() on a live session ends it with no requests lost", async () => {
    const h = await startHarness();
    harness = h;
    const c = connect({ target: h.service.address, onLog, handler: () => "reply" });
    client = c;
    await waitFor(() => c.connected, { what: "connected" });
    expect(h.service.gauges()["service.sessions"]).toBe(1);
    await c.drain();
    expect(c.connected).toBe(false);
    await waitFor(() => h.service.gauges()["service.sessions"] === 0, { what: "no session" });
    expect(logs.filter((l) => l.level === "warn")).toEqual([]);
  });
});
