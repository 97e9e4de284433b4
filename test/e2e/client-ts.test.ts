/**
 * The TypeScript policy client end to end: `icmpfwd serve` in a private namespace (TUN, kernel
 * ping) on a unix socket, and the built `icmpfwd-policy` CLI deciding. Every run has a positive
 * control: pings answered before the client connects.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import {
  describeNetns,
  Netns,
  parsePing,
  type Spawned,
  tempDir,
  waitFor,
} from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const CLI_JS = fileURLToPath(new URL("../../clients/ts/dist/cli.js", import.meta.url));

const counter = (s: Record<string, number>, k: string): number => s[k] ?? 0;
const connections = (p: Spawned): number => p.output().split('"msg":"connected"').length - 1;

describeNetns("the TypeScript policy client end to end", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let cli: Spawned | null = null;

  beforeAll(async () => {
    if (!existsSync(CLI_JS)) throw new Error(`${CLI_JS} is missing: run npm run build first`);
    ns = await Netns.create("clits");
  });

  afterEach(async () => {
    if (cli !== null && cli.child.exitCode === null) {
      cli.child.kill("SIGKILL");
      await cli.exited;
    }
    cli = null;
    if (serve !== null) await serve.stop();
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  async function startService(args: string[] = [], socket?: string) {
    const sock = socket ?? join(tempDir("icmpfwd-sock-"), "s.sock");
    serve = await startServe(ns, ["--listen", `unix:${sock}`, ...args]);
    return { serve, sock };
  }

  async function ping(count: number, dst = "198.18.0.2") {
    const r = await ns.ping(["-n", "-c", String(count), "-i", "0.05", "-W", "2", dst]);
    return { ...parsePing(r.stdout), received: r.received, seqs: r.seqs };
  }

  /** Runs the CLI and waits for its nth Welcome. */
  async function startCli(args: string[]): Promise<Spawned> {
    const p = ns.spawnNode(CLI_JS, args);
    cli = p;
    await waitFor(() => connections(p) >= 1 || p.child.exitCode !== null, {
      what: "the client to connect",
      timeoutMs: 10_000,
    });
    if (p.child.exitCode !== null) throw new Error(`icmpfwd-policy exited: ${p.output()}`);
    return p;
  }

  async function stopCli(p: Spawned): Promise<string> {
    p.child.kill("SIGTERM");
    const e = await p.exited;
    expect(e.code, p.output()).toBe(0);
    const m = /^summary .*$/m.exec(p.output());
    expect(m, p.output()).not.toBeNull();
    return m![0];
  }

  it("even-reply: exactly the even sequences are answered, the stats and the summary agree", async () => {
    const { serve, sock } = await startService();
    // Positive control: with no client, serve answers (fallthrough → the netstack's reply).
    const control = await ping(3);
    expect(control.received).toBe(3);

    const p = await startCli(["even-reply", "--target", `unix:${sock}`]);
    const r = await ping(20);
    expect(r.transmitted).toBe(20);
    expect(r.seqs).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20].slice(0, r.seqs.length));
    const s = await serve.waitVerdicts(20);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(10);
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(10);
    expect(counter(s, "service.outcomes.fallthrough.noClient")).toBe(3);
    expect(counter(s, "service.outcomes.fallthrough.timeout")).toBe(0);
    const summary = await stopCli(p);
    expect(summary).toContain("decided=20 reply=10 consume=10 fallthrough=0 errors=0");
    cli = null;
  });

  it("reply-all answers 100% and drop-all 0%", async () => {
    const { serve, sock } = await startService();
    expect((await ping(2)).received).toBe(2);

    let p = await startCli(["reply-all", "--target", `unix:${sock}`]);
    const all = await ping(10);
    expect(all.received).toBe(10);
    await stopCli(p);

    p = await startCli(["drop-all", "--target", `unix:${sock}`]);
    const none = await ping(10);
    expect(none.transmitted).toBe(10);
    expect(none.received).toBe(0);
    const s = await serve.waitVerdicts(20);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(10);
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(10);
    expect(await stopCli(p)).toContain("decided=10 reply=0 consume=10");
    cli = null;
  });

  it("reconnects after the service restarts and decides again", async () => {
    const { sock } = await startService();
    expect((await ping(2)).received).toBe(2);
    const p = await startCli(["even-reply", "--target", `unix:${sock}`]);
    const before = await ping(4);
    expect(before.received).toBe(2);
    expect(before.seqs).toEqual([2, 4].slice(0, before.seqs.length));

    expect((await serve!.stop()).code).toBe(0);
    serve = null;
    const again = await startService([], sock);
    await waitFor(() => connections(p) >= 2, {
      what: "the client to reconnect",
      timeoutMs: 15_000,
    });
    expect(p.output()).toContain("disconnected; reconnecting");
    const after = await ping(4);
    expect(after.received).toBe(2);
    expect(after.seqs).toEqual([2, 4].slice(0, after.seqs.length));
    const s = await again.serve.waitVerdicts(4);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(2);
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(2);
    expect(await stopCli(p)).toContain("decided=8 reply=4 consume=4");
    cli = null;
  });

  it("with --token on the service: the client with the token decides, one without fails clearly", async () => {
    const { serve, sock } = await startService(["--token", "s3cret-token-for-tests"]);
    expect((await ping(2)).received).toBe(2);

    const bad = ns.spawnNode(CLI_JS, ["drop-all", "--target", `unix:${sock}`, "--token", "wrong"]);
    const e = await bad.exited;
    // docs/cli-contract.md: refused credentials exit 2.
    expect(e.code).toBe(2);
    expect(bad.output()).toMatch(/authentication failed.*UNAUTHENTICATED/);
    const none = ns.spawnNode(CLI_JS, ["drop-all", "--target", `unix:${sock}`]);
    expect((await none.exited).code).toBe(2);
    expect(none.output()).toMatch(/authentication failed/);

    const p = await startCli([
      "drop-all",
      "--target",
      `unix:${sock}`,
      "--token",
      "s3cret-token-for-tests",
    ]);
    expect((await ping(4)).received).toBe(0);
    await serve.waitStats(
      (x) => counter(x, "service.outcomes.consume.verdict") === 4,
      "4 consumed by the authenticated client",
    );
    await stopCli(p);
    cli = null;
  });

  it("proxy-latency: consumed, then a synthetic reply after the delay; observe-log sees copies", async () => {
    const { serve, sock } = await startService();
    const control = await ping(2);
    expect(control.received).toBe(2);
    // The built-in path answers under the delay (its fastest reply: a loaded machine may hold
    // one up), so the delay below is the policy's.
    expect(control.rttMinMs).toBeLessThan(200);

    const obs = await startCli(["observe-log", "--target", `unix:${sock}`]);
    const p = ns.spawnNode(CLI_JS, [
      "proxy-latency",
      "--delay-ms",
      "200",
      "--target",
      `unix:${sock}`,
    ]);
    await waitFor(() => connections(p) >= 1, { what: "proxy-latency to connect" });
    const r = await ns.exec("ping", ["-n", "-c", "3", "-i", "0.3", "-W", "2", "198.18.0.2"]);
    const q = parsePing(r.stdout);
    expect(q.received).toBe(3);
    expect(q.rttAvgMs).toBeGreaterThanOrEqual(200);
    const s = await serve.waitStats(
      (x) => counter(x, "service.synthetic.sent") === 3,
      "3 synthetic replies",
    );
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(3);
    p.child.kill("SIGTERM");
    expect((await p.exited).code).toBe(0);
    expect(p.output()).toContain("decided=3 reply=0 consume=3");
    await waitFor(() => (obs.output().match(/"sequence":\d+/g) ?? []).length >= 3, {
      what: "3 observed requests",
    });
    expect(obs.output()).toContain('"source":"198.18.0.1"');
    expect(await stopCli(obs)).toContain("observed=3");
    cli = null;
  });

  it("proxy-latency --measure: the client host pings the original destination itself, and the reply waits for that RTT", async () => {
    const { serve, sock } = await startService();
    expect((await ping(2)).received).toBe(2);
    // The policy client runs on another "host": a second namespace where 198.18.0.2 is a local
    // address (on its loopback), so its ping to the original destination never enters the TUN.
    const upstream = await Netns.create("up");
    try {
      await upstream.sh("ip addr add 198.18.0.2/32 dev lo");
      const p = upstream.spawnNode(CLI_JS, [
        "proxy-latency",
        "--measure",
        "--delay-ms",
        "1500",
        "--target",
        `unix:${sock}`,
      ]);
      await waitFor(() => connections(p) >= 1 || p.child.exitCode !== null, {
        what: "proxy-latency --measure to connect",
      });
      const before = serve.stats();
      const r = await ns.exec("ping", ["-n", "-c", "3", "-i", "0.3", "-W", "3", "198.18.0.2"]);
      const q = parsePing(r.stdout);
      expect(q.received).toBe(3);
      // The measured RTT (a local address: well under a millisecond), not the 1500 ms fallback.
      expect(q.rttAvgMs).toBeLessThan(500);
      const s = await serve.waitStats(
        (x) => counter(x, "service.synthetic.sent") === 3,
        "3 synthetic replies",
      );
      expect(counter(s, "service.outcomes.consume.verdict")).toBe(3);
      expect(counter(s, "service.outcomes.reply.verdict")).toBe(0);
      const got = (k: string) => counter(s, k) - counter(before, k);
      expect(got("icmp.v4.packetsReceived.echoRequest")).toBe(3);
      // One measurement (the next two requests reuse it), answered by the upstream namespace.
      expect(await upstream.nstat("IcmpInEchos")).toBe(1);
      expect(p.output().match(/"msg":"measured rtt","destination":"198\.18\.0\.2"/g)).toHaveLength(
        1,
      );
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
      expect(p.output()).toContain(
        "decided=3 reply=0 consume=3 fallthrough=0 errors=0 observed=0 sessions=1 pings=1 shared=2 ping_failures=0 loops=0",
      );
    } finally {
      await upstream.destroy();
    }
  });

  it("proxy-latency --measure: a measurement ping routed into icmpfwd itself is detected and answered, and the fixed delay applies", async () => {
    const { serve, sock } = await startService();
    expect((await ping(2)).received).toBe(2);
    // Same namespace as the service: the client's ping to 198.18.0.2 goes into the TUN.
    const p = await startCli([
      "proxy-latency",
      "--measure",
      "--delay-ms",
      "300",
      "--target",
      `unix:${sock}`,
    ]);
    const r = await ns.exec("ping", ["-n", "-c", "2", "-i", "0.5", "-W", "3", "198.18.0.2"]);
    const q = parsePing(r.stdout);
    expect(q.received).toBe(2);
    expect(q.rttAvgMs).toBeGreaterThanOrEqual(300);
    // 2 pings consumed and answered later; the measurement ping answered at once, never measured.
    const s = await serve.waitStats(
      (x) => counter(x, "service.synthetic.sent") === 2,
      "2 synthetic replies",
    );
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(2);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(1);
    expect(p.output()).toContain("(a routing loop); using the fixed delay");
    expect(await stopCli(p)).toContain(
      "decided=3 reply=1 consume=2 fallthrough=0 errors=0 observed=0 sessions=1 pings=1 shared=1 ping_failures=0 loops=1",
    );
    cli = null;
  });
});
