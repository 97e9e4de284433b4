/**
 * The decision service end to end: `icmpfwd serve` in a private namespace (TUN, kernel ping),
 * listening on a unix socket (reachable from this process in the root namespace), and a small
 * policy client in this test. Every "no reply" phase has a positive control in the same run, and
 * the counters agree with what ping saw.
 */
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { Action, type EchoRequest } from "../../src/gen/icmpfwd/v1/forwarder.js";
import { describeNetns, Netns, parsePing, tempDir, waitFor } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

/** A client that decides each event as it arrives. */
function decideEach(c: TestClient, decide: (e: EchoRequest) => Action | null): void {
  let seen = 0;
  c.call.on("data", () => {
    const fresh = c.events.slice(seen);
    seen = c.events.length;
    const vs = fresh.flatMap((e) => {
      const action = decide(e);
      return action === null ? [] : [{ requestId: e.requestId, action }];
    });
    if (vs.length > 0) c.verdicts(vs);
  });
}

describeNetns("the decision service end to end", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let client: TestClient | null = null;

  beforeAll(async () => {
    ns = await Netns.create("svc");
  });

  afterEach(async () => {
    client?.close();
    client = null;
    if (serve !== null) expect((await serve.stop()).code).toBe(0);
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  async function start(args: string[]): Promise<{ serve: ServeProcess; socket: string }> {
    const socket = join(tempDir("icmpfwd-sock-"), "icmpfwd.sock");
    serve = await startServe(ns, ["--listen", `unix:${socket}`, ...args]);
    expect(serve.proc.output()).toContain(`"listen":"unix:${socket}"`);
    return { serve, socket };
  }

  const counter = (s: Record<string, number>, k: string) => s[k] ?? 0;

  it("consumes odd sequences and replies to even ones: ping sees exactly the even ones, and the stats agree", async () => {
    const { serve, socket } = await start([]);
    client = await TestClient.connect(`unix:${socket}`);
    decideEach(client, (e) => (e.sequence % 2 === 0 ? Action.ACTION_REPLY : Action.ACTION_CONSUME));
    const kernelBefore = await ns.nstat("IcmpInEchos");
    const r = await ns.ping(["-n", "-c", "20", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    expect(r.transmitted).toBe(20);
    expect(r.received).toBe(10);
    const evens = [2, 4, 6, 8, 10, 12, 14, 16, 18, 20];
    expect(r.seqs).toEqual(evens.slice(0, r.seqs.length));
    const s = await serve.waitVerdicts(20);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(10);
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(10);
    expect(counter(s, "service.requests")).toBe(20);
    expect(counter(s, "icmp.v4.packetsReceived.echoRequest")).toBe(20);
    expect(counter(s, "icmp.v4.packetsSent.echoReply")).toBe(10);
    expect(counter(s, "service.outcomes.fallthrough.timeout")).toBe(0);
    expect(counter(s, "service.sessions")).toBe(1);
    expect(await ns.nstat("IcmpInEchos")).toBe(kernelBefore);

    // IPv6, same policy, same session.
    const r6 = await ns.ping(["-6", "-n", "-c", "6", "-i", "0.05", "-W", "2", "fd00:1::2"]);
    expect(r6.received).toBe(3);
    expect(r6.seqs).toEqual([2, 4, 6].slice(0, r6.seqs.length));
    const s6 = await serve.waitVerdicts(26);
    expect(counter(s6, "service.outcomes.consume.verdict")).toBe(13);
    expect(counter(s6, "icmp.v6.packetsSent.echoReply")).toBe(3);
  });

  /**
   * The client consumes the first 8 events and holds the next ones, then dies. Held requests
   * get on-disconnect, later ones on-no-client (fallthrough: answered). The deadline is long, so
   * an answer before it proves the disconnect, not a timeout, released the held requests.
   */
  async function killMidRun(onDisconnect: "fallthrough" | "consume") {
    const { serve, socket } = await start(["--deadline", "5000", "--on-disconnect", onDisconnect]);
    const c = await TestClient.connect(`unix:${socket}`);
    client = c;
    decideEach(c, (e) => (c.events.indexOf(e) < 8 ? Action.ACTION_CONSUME : null));
    const pinging = ns.ping(["-n", "-c", "20", "-i", "0.05", "-W", "3", "198.18.0.2"]);
    await c.waitEvents(10);
    await serve.waitStats(
      (x) => counter(x, "service.outcomes.consume.verdict") === 8,
      "8 consumed",
    );
    c.close();
    const r = await pinging;
    const s = await serve.waitStats(
      (x) => counter(x, "service.requests") === 20 && counter(x, "service.inFlight") === 0,
      "20 requests with an outcome",
    );
    const held = counter(s, `service.outcomes.${onDisconnect}.disconnect`);
    const noClient = counter(s, "service.outcomes.fallthrough.noClient");
    expect(held).toBeGreaterThanOrEqual(2);
    expect(noClient).toBeGreaterThanOrEqual(1);
    expect(8 + held + noClient).toBe(20);
    expect(counter(s, "service.outcomes.fallthrough.timeout")).toBe(0);
    expect(counter(s, "service.outcomes.consume.timeout")).toBe(0);
    return {
      ping: { ...parsePing(r.stdout), received: r.received },
      seqs: r.seqs,
      held,
      noClient,
      stats: s,
    };
  }

  it("kill the client mid-run: held and later requests fall through, answered well within the deadline", async () => {
    const r = await killMidRun("fallthrough");
    expect(r.ping.received).toBe(12);
    const expected = Array.from({ length: 12 }, (_, i) => i + 9);
    expect(r.seqs).toEqual(expected.slice(0, r.seqs.length));
    expect(counter(r.stats, "icmp.v4.packetsSent.echoReply")).toBe(12);
  });

  it("with --on-disconnect consume, held requests stay unanswered; later ones (no client) are answered", async () => {
    const r = await killMidRun("consume");
    // The positive control in the same run: everything after the disconnect is answered.
    expect(r.ping.received).toBe(r.noClient);
    const expected = Array.from({ length: r.noClient }, (_, i) => 21 - r.noClient + i);
    expect(r.seqs).toEqual(expected.slice(0, r.seqs.length));
    expect(counter(r.stats, "icmp.v4.packetsSent.echoReply")).toBe(r.noClient);
  });
});

describeNetns("SIGTERM drains the decision service", () => {
  let ns: Netns;

  beforeAll(async () => {
    ns = await Netns.create("svcdrain");
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  it("tells the client Draining, carries out its verdicts for held requests, exits 0 with the TUN gone", async () => {
    const socket = join(tempDir("icmpfwd-sock-"), "icmpfwd.sock");
    const serve = await startServe(ns, [
      "--listen",
      `unix:${socket}`,
      "--deadline",
      "8000",
      "--drain-timeout",
      "5000",
    ]);
    const c = await TestClient.connect(`unix:${socket}`);
    try {
      const pinging = ns.exec("ping", ["-n", "-c", "2", "-i", "0.1", "-W", "6", "198.18.0.2"]);
      const held = await c.waitEvents(2);
      const exited = serve.stop("SIGTERM");
      await c.until(() => c.drainingSeen, "Draining");
      c.decide(held, Action.ACTION_REPLY);
      const exit = await exited;
      expect(exit.code).toBe(0);
      expect(parsePing((await pinging).stdout).received).toBe(2);
      expect((await c.waitStatus()).code).toBe(0);
      expect((await ns.exec("ip", ["link", "show", "icmpfwd0"])).code).not.toBe(0);
      const stopped = await waitFor(
        () =>
          serve.proc
            .output()
            .split("\n")
            .find((l) => l.includes('"msg":"stopped"')),
        { what: "stopped line" },
      );
      const line = JSON.parse(stopped) as { drained: boolean; stats: Record<string, number> };
      expect(line.drained).toBe(true);
      expect(line.stats["service.outcomes.reply.verdict"]).toBe(2);
      expect(serve.stats()["service.outcomes.reply.verdict"]).toBe(2);
    } finally {
      c.close();
      await serve.stop("SIGKILL");
    }
  });
});
