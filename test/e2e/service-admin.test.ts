/**
 * Issue 8 end to end, in a private namespace: a proxy-style client consumes every request and
 * answers it with a synthetic reply 200 ms later (kernel ping sees ≥ 200 ms RTTs; a positive
 * control without the client in the same run), and the CLI's `ping` and `stats` against the
 * unix socket.
 */
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { Action } from "../../src/gen/icmpfwd/v1/forwarder.js";
import { describeNetns, Netns, parsePing, tempDir } from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

/** The RTT of every reply ping printed, in ms. */
function rtts(output: string): number[] {
  return [...output.matchAll(/bytes from .*time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

describeNetns("proxy-owned replies and the CLI end to end", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let client: TestClient | null = null;

  beforeAll(async () => {
    ns = await Netns.create("svcadm");
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

  async function start(): Promise<string> {
    const socket = join(tempDir("icmpfwd-sock-"), "icmpfwd.sock");
    serve = await startServe(ns, ["--listen", `unix:${socket}`, "--deadline", "1000"]);
    return socket;
  }

  it("a proxy consumes and answers 200 ms later with a synthetic reply: ping sees RTTs of at least 200 ms", async () => {
    const socket = await start();
    const s0 = serve as ServeProcess;
    // Positive control first: no client, the netstack answers at once.
    const control = await ns.ping(["-n", "-c", "3", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    expect(control.received).toBe(3);
    // Its fastest reply: a loaded machine may hold one up, the delay below holds up every one.
    expect(Math.min(...rtts(control.stdout))).toBeLessThan(200);

    const c = await TestClient.connect(`unix:${socket}`);
    client = c;
    let seen = 0;
    c.call.on("data", () => {
      const fresh = c.events.slice(seen);
      seen = c.events.length;
      if (fresh.length === 0) return;
      c.decide(fresh, Action.ACTION_CONSUME);
      setTimeout(() => {
        for (const e of fresh) c.synthetic(e.requestId);
      }, 200);
    });
    const r = await ns.exec("ping", ["-n", "-c", "5", "-i", "0.3", "-W", "2", "198.18.0.2"]);
    const p = parsePing(r.stdout);
    expect(p.received).toBe(5);
    const times = rtts(r.stdout);
    expect(times).toHaveLength(5);
    for (const ms of times) expect(ms).toBeGreaterThanOrEqual(200);
    const s = await s0.waitStats((x) => x["service.synthetic.sent"] === 5, "5 synthetic replies");
    expect(s["service.outcomes.consume.verdict"]).toBe(5);
    expect(s["service.outcomes.fallthrough.noClient"]).toBe(3);
    expect(s["service.rejections.syntheticNotAllowed"]).toBe(0);
    expect(s["icmp.v4.packetsSent.echoReply"]).toBe(8);
    expect(c.rejections).toHaveLength(0);
  });

  it("`icmpfwd ping 198.18.0.1` from inside the netstack gets the kernel's replies, and `icmpfwd stats` shows the run's counters", async () => {
    const socket = await start();
    const kernelBefore = await ns.nstat("IcmpInEchos");
    const cli = (args: string[]) =>
      ns.exec(process.execPath, [MAIN_JS, ...args, "--target", `unix:${socket}`], {
        timeoutMs: 20_000,
      });
    const r = await cli(["ping", "198.18.0.1", "--count", "3", "--interval", "0.05", "--json"]);
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { sequence: number; received: boolean; source: string });
    expect(events.map((e) => [e.sequence, e.received, e.source])).toEqual([
      [1, true, "198.18.0.1"],
      [2, true, "198.18.0.1"],
      [3, true, "198.18.0.1"],
    ]);
    expect(await ns.nstat("IcmpInEchos")).toBe(kernelBefore + 3);

    const refused = await cli(["ping", "198.18.0.2", "--count", "1"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/198\.18\.0\.2 is the netstack's own address/);

    await ns.exec("ping", ["-n", "-c", "2", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    const stats = await cli(["stats", "--json"]);
    expect(stats.code).toBe(0);
    const j = JSON.parse(stats.stdout) as { counters: Record<string, number> };
    expect(j.counters["icmp.v4.packetsSent.echoRequest"]).toBe(3);
    expect(j.counters["icmp.v4.packetsReceived.echoReply"]).toBe(3);
    expect(j.counters["service.requests"]).toBe(2);
    expect(j.counters["service.outcomes.fallthrough.noClient"]).toBe(2);
    const table = await cli(["stats"]);
    expect(table.stdout).toMatch(/^service\.requests\s+2$/m);

    const health = await cli(["health"]);
    expect([health.code, health.stdout.trim()]).toEqual([0, "SERVING"]);
  });
});
