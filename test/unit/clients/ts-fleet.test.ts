/**
 * Fleets in the TypeScript client: a comma-separated target list and `dns:///name:port` (every
 * address, re-resolved) against real grpc-js servers on loopback, with an injectable resolver.
 */
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  connect,
  DEFAULT_TARGET,
  defaultTarget,
  type LogLevel,
  type PolicyClient,
  parseTargets,
} from "../../../clients/ts/src/index.js";
import { sleep, waitFor } from "../../helpers/netns.js";
import { echoRequest, FakeService } from "./ts-fake-service.js";

const logs: { level: LogLevel; msg: string; fields?: Record<string, unknown> }[] = [];
const onLog = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
  logs.push({ level, msg, fields });
};

let fakes: FakeService[] = [];
let client: PolicyClient | null = null;
afterEach(async () => {
  await client?.drain().catch(() => {});
  client = null;
  for (const f of fakes) f.stop();
  fakes = [];
  logs.length = 0;
});

async function fake(host = "127.0.0.1", port = 0): Promise<FakeService> {
  const f = new FakeService();
  await f.start(host, port);
  fakes.push(f);
  return f;
}

const targets = (c: PolicyClient): string[] =>
  c
    .services()
    .map((s) => s.target)
    .sort();

describe("target lists", () => {
  it("parses host:port, [v6]:port, unix:/path and dns:///name:port, and names a bad element", () => {
    expect(
      parseTargets(" 127.0.0.1:1, [fd00::2]:2,unix:/run/x.sock , dns:///svc.local:50051"),
    ).toEqual([
      { kind: "service", target: "127.0.0.1:1" },
      { kind: "service", target: "[fd00::2]:2" },
      { kind: "service", target: "unix:/run/x.sock" },
      { kind: "dns", host: "svc.local", port: 50051, text: "dns:///svc.local:50051" },
    ]);
    expect(() => parseTargets("")).toThrow("empty target list");
    expect(() => parseTargets("127.0.0.1:1,dns:///svc")).toThrow(
      "bad target dns:///svc: want dns:///name:port",
    );
    expect(() => parseTargets("dns://svc:1")).toThrow("bad target dns://svc:1");
    expect(() => parseTargets("host:99999")).toThrow("bad target host:99999");
  });

  it("defaults to env ICMPFWD_TARGET, else 127.0.0.1:50051", () => {
    expect(DEFAULT_TARGET).toBe("127.0.0.1:50051");
    expect(defaultTarget({})).toBe("127.0.0.1:50051");
    expect(defaultTarget({ ICMPFWD_TARGET: "" })).toBe("127.0.0.1:50051");
    expect(defaultTarget({ ICMPFWD_TARGET: "unix:/run/icmpfwd.sock" })).toBe(
      "unix:/run/icmpfwd.sock",
    );
  });

  it("connect() without a target uses ICMPFWD_TARGET", async () => {
    const f = await fake();
    const before = process.env.ICMPFWD_TARGET;
    process.env.ICMPFWD_TARGET = f.address;
    try {
      client = connect({ onLog, handler: () => "reply" });
    } finally {
      if (before === undefined) delete process.env.ICMPFWD_TARGET;
      else process.env.ICMPFWD_TARGET = before;
    }
    await waitFor(() => client?.connected, { what: "connected" });
    expect(targets(client)).toEqual([f.address]);
  });
});

describe("a comma-separated fleet", () => {
  it("keeps one session per service, sums the stats, and done resolves when all have drained", async () => {
    const a = await fake();
    const b = await fake();
    const c = connect({
      target: `${a.address},${b.address},${a.address}`,
      onLog,
      handler: (r) => (r.sequence % 2 === 0 ? "reply" : "consume"),
    });
    client = c;
    await a.stream();
    await b.stream();
    await waitFor(() => c.services().every((s) => s.connected), { what: "both connected" });
    expect(targets(c)).toEqual([a.address, b.address].sort());
    expect(a.calls).toHaveLength(1);
    a.send(
      0,
      [1, 2, 3].map((i) => echoRequest(i)),
    );
    b.send(
      0,
      [4, 5].map((i) => echoRequest(i)),
    );
    await waitFor(() => a.batches().flat().length === 3 && b.batches().flat().length === 2, {
      what: "5 verdicts",
    });
    expect(c.stats).toEqual({
      decided: { reply: 2, consume: 3, fallthrough: 0 },
      errors: 0,
      observed: 0,
      sessions: 2,
    });
    // Every log line about one service names it, and its session once welcomed.
    const connected = logs.filter((l) => l.msg === "connected").map((l) => l.fields);
    expect(connected.map((f) => [f?.target, f?.session]).sort()).toEqual(
      [
        [a.address, "s1"],
        [b.address, "s1"],
      ].sort(),
    );
    await c.drain();
    expect(a.open() + b.open()).toBe(0);
    expect(c.connected).toBe(false);
  });

  it("each session reconnects on its own without disturbing the others", async () => {
    const a = await fake();
    const b = await fake();
    const c = connect({
      target: `${a.address},${b.address}`,
      onLog,
      backoff: { initialMs: 10, maxMs: 50 },
      handler: () => "reply",
    });
    client = c;
    await a.stream();
    await b.stream();
    await waitFor(() => c.stats.sessions === 2, { what: "2 Welcomes" });
    a.calls[0].call.emit("error", { code: grpcStatus.UNAVAILABLE, details: "restarting" });
    await a.stream(1);
    await waitFor(() => c.stats.sessions === 3, { what: "a's second Welcome" });
    await sleep(50);
    expect(b.calls).toHaveLength(1);
    expect(b.open()).toBe(1);
    const again = logs.filter((l) => l.msg === "disconnected; reconnecting");
    expect(again.map((l) => l.fields?.target)).toEqual([a.address]);
  });

  it("a service refusing the credentials stops the whole client: the others drain, done rejects", async () => {
    const a = await fake();
    const b = await fake();
    b.refuse = { code: grpcStatus.UNAUTHENTICATED, details: "bad token" };
    const c = connect({ target: `${a.address},${b.address}`, onLog, handler: () => "reply" });
    client = c;
    await expect(c.done).rejects.toThrow(
      `${b.address}: authentication failed (check the token): UNAUTHENTICATED: bad token`,
    );
    expect(a.open()).toBe(0);
    expect(b.calls).toHaveLength(1);
  });
});

describe("dns:/// fleets", () => {
  /** A resolver the test scripts: each call returns (or throws) the next answer, then the last. */
  function scripted(answers: (string[] | Error)[]) {
    let calls = 0;
    const resolver = async (host: string): Promise<string[]> => {
      expect(host).toBe("policy.test");
      const a = answers[Math.min(calls, answers.length - 1)];
      calls++;
      if (a instanceof Error) throw a;
      return a;
    };
    return { resolver, calls: () => calls };
  }

  it("opens a session with every address the name resolves to (A and AAAA)", async () => {
    const v4 = await fake("127.0.0.1");
    const v6 = await fake("::1", v4.port);
    const r = scripted([["127.0.0.1", "::1"]]);
    const c = connect({
      target: `dns:///policy.test:${v4.port}`,
      resolver: r.resolver,
      onLog,
      handler: () => "reply",
    });
    client = c;
    await v4.stream();
    await v6.stream();
    expect(targets(c)).toEqual([`127.0.0.1:${v4.port}`, `[::1]:${v4.port}`].sort());
    await waitFor(() => c.stats.sessions === 2, { what: "2 Welcomes" });
  });

  it("re-resolves every resolveIntervalMs: a session for an address that appears, a drain for one that goes, no change when resolving fails", async () => {
    const one = await fake("127.0.0.1");
    const two = await fake("127.0.0.2", one.port);
    const port = one.port;
    const r = scripted([
      ["127.0.0.1"],
      ["127.0.0.1", "127.0.0.2"],
      ["127.0.0.2"],
      new Error("SERVFAIL"),
    ]);
    const c = connect({
      target: `dns:///policy.test:${port}`,
      resolver: r.resolver,
      resolveIntervalMs: 100,
      onLog,
      handler: () => "reply",
    });
    client = c;
    await one.stream();
    expect(targets(c)).toEqual([`127.0.0.1:${port}`]);
    // Second answer: 127.0.0.2 appears; 127.0.0.1 keeps its one stream.
    await two.stream();
    await waitFor(() => c.services().length === 2, { what: "two services" });
    // Third answer: 127.0.0.1 went away: its session sends Drain and ends.
    await waitFor(() => one.open() === 0, { what: "the session with 127.0.0.1 drained" });
    expect(one.calls[0].received.map((m) => m.message?.$case)).toEqual(["hello", "drain"]);
    expect(one.calls).toHaveLength(1);
    expect(targets(c)).toEqual([`127.0.0.2:${port}`]);
    // Fourth and later answers fail: nothing changes.
    await waitFor(() => r.calls() >= 6, { what: "failed resolutions" });
    expect(targets(c)).toEqual([`127.0.0.2:${port}`]);
    expect(two.calls).toHaveLength(1);
    expect(two.open()).toBe(1);
    expect(logs.some((l) => l.msg === "resolving failed; keeping the current sessions")).toBe(true);
    await c.drain();
    expect(two.open()).toBe(0);
  });

  it("done resolves on abort even while the name resolves to nothing", async () => {
    const r = scripted([new Error("ENOTFOUND")]);
    const ac = new AbortController();
    const c = connect({
      target: "dns:///policy.test:1",
      resolver: r.resolver,
      resolveIntervalMs: 20,
      signal: ac.signal,
      onLog,
      handler: () => "reply",
    });
    client = c;
    await waitFor(() => r.calls() >= 2, { what: "two resolutions" });
    expect(c.services()).toEqual([]);
    ac.abort();
    await c.done;
    const n = r.calls();
    await sleep(60);
    expect(r.calls()).toBe(n);
  });
});
